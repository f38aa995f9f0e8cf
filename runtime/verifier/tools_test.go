package verifier

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// toolCommands are stock tool invocations whose programs the kernel verifies in
// TestStockToolPrograms. Probes that cannot attach here (kprobes) still load their programs.
var toolCommands = [][]string{
	{"opensnoop"}, {"execsnoop"}, {"bashreadline"}, {"statsnoop"}, {"exitsnoop"}, {"sigsnoop"},
	{"mountsnoop"}, {"filelife"}, {"syscount"}, {"funclatency", "/bin/bash:readline"},
	{"biolatency"}, {"runqlat"}, {"cpudist"}, {"vfsstat"}, {"tcpconnect"}, {"bindsnoop"},
	{"capable"}, {"oomkill"}, {"drsnoop"}, {"killsnoop"}, {"gethostlatency"}, {"runqslower"},
	{"bpftrace", "-e", "uprobe:/bin/bash:readline { @c = count(); } BEGIN { exit(); }"},
	{"bpftrace", "-e", "uretprobe:/bin/bash:readline { printf(\"%s\\n\", str(retval)); } BEGIN { exit(); }"},
	{"bpftrace", "-e", "tracepoint:syscalls:sys_enter_openat { printf(\"%s %s\\n\", comm, str(args->filename)); } BEGIN { exit(); }"},
	{"bpftrace", "-e", "uprobe:/bin/bash:readline { @h = hist(pid); @l = lhist(tid, 0, 100, 10); @s = stats(arg0); @m[comm] = max(arg1); @n[tid] = min(arg2); @a = avg(arg3); @z = sum(arg4); } BEGIN { exit(); }"},
	{"bpftrace", "-e", "uprobe:/bin/bash:readline { @start[tid] = nsecs; } uretprobe:/bin/bash:readline /@start[tid]/ { @lat = hist(nsecs - @start[tid]); delete(@start[tid]); } BEGIN { exit(); }"},
	{"bpftrace", "-e", "BEGIN { printf(\"hi %d %s\\n\", 42, \"xyz\"); @x[1, \"a\"] = 3; print(@x); clear(@x); exit(); } END { printf(\"bye\\n\"); }"},
	{"bpftrace", "-e", "uprobe:/lib/x86_64-linux-gnu/libc.so.6:malloc /arg0 > 1024/ { @[ustack] = count(); @b[comm, pid] = sum(arg0); } BEGIN { exit(); }"},
	{"bpftrace", "/usr/sbin/opensnoop.bt"}, {"bpftrace", "/usr/sbin/execsnoop.bt"}, {"bpftrace", "/usr/sbin/bashreadline.bt"},
	{"bpftrace", "/usr/sbin/statsnoop.bt"}, {"bpftrace", "/usr/sbin/syscount.bt"}, {"bpftrace", "/usr/sbin/setuids.bt"},
	{"bpftrace", "/usr/sbin/gethostlatency.bt"}, {"bpftrace", "/usr/sbin/killsnoop.bt"}, {"bpftrace", "/usr/sbin/threadsnoop.bt"},
}

// dumpedProg is one BPF_PROG_LOAD a tool made, with the kernel's answer.
type dumpedProg struct {
	tool  string
	typ   program.Type
	gpl   bool
	errno syscall.Errno
	name  string
	insns []isa.Instruction
	maps  map[int32]program.MapInfo
}

// TestStockToolPrograms runs stock tools as root with a preloaded recorder of their program
// loads: every program the kernel accepts, our verifier must accept too.
func TestStockToolPrograms(t *testing.T) {
	if testing.Short() {
		t.Skip("runs stock tools")
	}
	newKernel(t)
	progs := recordToolPrograms(t)
	if len(progs) == 0 {
		t.Skip("no tool could be run")
	}
	accepted, agree, refused, skipped := 0, 0, 0, 0
	for _, p := range progs {
		if p.typ == program.Tracing || p.typ > 32 {
			skipped++
			continue
		}
		var log bytes.Buffer
		opts := &Options{Type: p.typ, Helpers: allHelpers(t), GPL: p.gpl, Log: &log, LogLevel: 1,
			Maps: func(src uint8, ref int32) (program.MapInfo, error) {
				m, ok := p.maps[ref]
				if !ok {
					return m, refuse(syscall.EBADF, "fd %d is not pointing to valid bpf_map", ref)
				}
				return m, nil
			}}
		start := time.Now()
		vp, err := Verify(p.insns, opts)
		took := time.Since(start)
		if vp != nil {
			checks := 0
			for _, c := range vp.Checks {
				if c == program.CheckBounds {
					checks++
				}
			}
			if len(p.insns) > 40 || checks > 0 {
				t.Logf("%s %q: %d insns, %d run-time checks, verified in %v", p.tool, p.name, len(p.insns), checks, took)
			}
		}
		if took > 2*time.Second {
			t.Errorf("%s %s (%d insns): verification took %v", p.tool, p.name, len(p.insns), took)
		}
		switch {
		case p.errno == 0 && err != nil:
			t.Errorf("%s: program %q (type %d, %d insns) accepted by the kernel, refused by us: %v", p.tool, p.name, p.typ, len(p.insns), err)
			t.Logf("log:\n%s", tail(log.String(), 30))
		case p.errno == 0:
			accepted++
		default:
			refused++
			if err != nil && Errno(err) == p.errno {
				agree++
			}
		}
	}
	t.Logf("%d programs from %d tool runs: %d accepted by both; kernel refusals %d, ours agree on %d; %d of types we do not verify",
		len(progs), len(toolCommands), accepted, refused, agree, skipped)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// allHelpers offers every helper the runtime has a prototype for.
func allHelpers(t testing.TB) *helper.Table { return allHelpersNoT() }

func allHelpersNoT() *helper.Table {
	tab := helper.NewTable()
	for id := helper.ID(0); id < helper.MaxID; id++ {
		if _, ok := helper.Lookup(id); ok {
			tab.Register(id, nil)
		}
	}
	return tab
}

// recordToolPrograms builds the recorder and runs every tool of toolCommands with it.
func recordToolPrograms(t *testing.T) []dumpedProg {
	dir := t.TempDir()
	so := filepath.Join(dir, "progdump.so")
	build := exec.Command("gcc", "-shared", "-fPIC", "-O2", "-o", so, "testdata/progdump.c", "-ldl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("building the recorder: %v\n%s", err, out)
	}
	var mu sync.Mutex
	var all []dumpedProg
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, argv := range toolCommands {
		path, err := exec.LookPath(argv[0])
		if err != nil {
			path = filepath.Join("/usr/sbin", argv[0])
			if _, err := os.Stat(path); err != nil {
				continue
			}
		}
		wg.Add(1)
		go func(i int, path string, argv []string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out := filepath.Join(dir, fmt.Sprintf("dump%d.txt", i))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, path, argv[1:]...)
			cmd.Env = append(os.Environ(), "LD_PRELOAD="+so, "EBPFU_PROGDUMP="+out)
			cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
			cmd.WaitDelay = 5 * time.Second
			if err := cmd.Start(); err != nil {
				return
			}
			time.AfterFunc(4*time.Second, func() { cmd.Process.Signal(os.Interrupt) })
			cmd.Wait()
			progs, err := parseDump(out, strings.Join(argv, " "))
			if err != nil {
				t.Errorf("%s: %v", argv[0], err)
				return
			}
			mu.Lock()
			all = append(all, progs...)
			mu.Unlock()
		}(i, path, argv)
	}
	wg.Wait()
	return all
}

// parseDump reads the recorder's file: "map ..." lines name the maps of the next "prog" line.
func parseDump(path, tool string) ([]dumpedProg, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var progs []dumpedProg
	maps := map[int32]program.MapInfo{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		kv := map[string]string{}
		for _, fl := range fields[1:] {
			if k, v, ok := strings.Cut(fl, "="); ok {
				kv[k] = v
			}
		}
		num := func(k string) uint32 { n, _ := strconv.ParseUint(kv[k], 10, 32); return uint32(n) }
		switch fields[0] {
		case "map":
			fd, _ := strconv.Atoi(kv["fd"])
			m := program.MapInfo{ID: uint32(fd), Type: num("type"), KeySize: num("key"), ValueSize: num("value"),
				MaxEntries: num("max"), Flags: num("flags")}
			if kv["frozen"] != "" {
				m.Frozen, _ = hex.DecodeString(kv["frozen"])
			}
			maps[int32(fd)] = m
		case "prog":
			code, err := hex.DecodeString(kv["insns"])
			if err != nil {
				return nil, fmt.Errorf("bad insns: %v", err)
			}
			insns, err := isa.Decode(code)
			if err != nil {
				return nil, err
			}
			en, _ := strconv.Atoi(kv["errno"])
			progs = append(progs, dumpedProg{tool: tool, typ: program.Type(num("type")), gpl: kv["gpl"] == "1",
				errno: syscall.Errno(en), name: kv["name"], insns: insns, maps: maps})
			maps = map[int32]program.MapInfo{}
		}
	}
	return progs, sc.Err()
}
