module github.com/ebpfu/ebpfu

go 1.26.8
