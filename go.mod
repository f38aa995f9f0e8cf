module github.com/ebpfu/ebpfu

go 1.26.8

require (
	github.com/cilium/ebpf v0.22.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/seccomp/libseccomp-golang v0.11.1 // indirect
	golang.org/x/arch v0.32.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
