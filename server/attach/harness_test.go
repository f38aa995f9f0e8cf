package attach

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/jit"
	"github.com/ebpfu/ebpfu/runtime/maps"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/runtime/verifier"
)

// The harness stands in for the server: it builds the agent and a workload, starts the workload
// with the agent preloaded, compiles programs with runtime/verifier and runtime/jit, keeps their
// maps and code in memfds of this process and attaches them through a Table in a private state
// directory.

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// built returns the directory holding libebpfu.so and the workload, building them once.
func built(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if _, err := exec.LookPath("gcc"); err != nil {
			buildErr = err
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "ebpfu-attach-test-")
		if buildErr != nil {
			return
		}
		os.Chmod(buildDir, 0o755)
		run := func(args ...string) {
			if buildErr != nil {
				return
			}
			out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("%v: %v\n%s", args, err, out)
			}
		}
		run("../../cshim/build.sh", filepath.Join(buildDir, "libebpfu.so"))
		run("gcc", "-O2", "-g", "-fno-omit-frame-pointer", "-o", filepath.Join(buildDir, "work"), "testdata/work.c", "-lpthread", "-ldl")
		run("gcc", "-O2", "-g", "-shared", "-fPIC", "-o", filepath.Join(buildDir, "lib.so"), "testdata/lib.c")
		if _, err := exec.LookPath("g++"); err == nil {
			run("g++", "-O2", "-g", "-o", filepath.Join(buildDir, "throw"), "testdata/throw.cc")
		}
	})
	if buildErr != nil {
		t.Fatalf("building the agent and workloads: %v", buildErr)
	}
	return buildDir
}

// stateParent is where test state directories go: /dev/shm when there is one, as the state
// directory of a user without XDG_RUNTIME_DIR (a memory file system, as in use).
func stateParent() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return ""
}

type harness struct {
	t   testing.TB
	dir string // the state directory
	tab *Table
	bin string
	fds []int
	ids map[ObjectKind]uint32 // last object id given, per kind (as the server's id spaces)
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	bin := built(t)
	dir, err := os.MkdirTemp(stateParent(), "ebpfu-state-")
	if err != nil {
		t.Fatal(err)
	}
	tab, err := OpenTable(dir, &TableOptions{NumCPU: 4, Budget: jit.DefaultProbeBudget})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, tab: tab, bin: bin, ids: map[ObjectKind]uint32{}}
	t.Cleanup(func() {
		tab.Close()
		for _, fd := range h.fds {
			unix.Close(fd)
		}
		os.RemoveAll(dir)
	})
	return h
}

// env is the environment of a traced process.
func (h *harness) env() []string {
	return append(os.Environ(), "LD_PRELOAD="+filepath.Join(h.bin, "libebpfu.so"), "EBPFU_STATE_DIR="+h.dir)
}

type proc struct {
	t   testing.TB
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	pid int
}

// start runs the workload with the agent and waits for its "ready".
func (h *harness) start() *proc {
	h.t.Helper()
	return h.startWith()
}

// startWith runs the workload with the agent and the extra environment variables, and waits
// for its "ready".
func (h *harness) startWith(env ...string) *proc {
	h.t.Helper()
	cmd := exec.Command(filepath.Join(h.bin, "work"))
	cmd.Env = append(h.env(), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	p := &proc{t: h.t, cmd: cmd, in: in, out: bufio.NewReader(outp), pid: cmd.Process.Pid}
	h.t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	if l := p.line(); !strings.HasPrefix(l, "ready") {
		h.t.Fatalf("workload said %q", l)
	}
	return p
}

func (p *proc) line() string {
	p.t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := p.out.ReadString('\n')
		ch <- res{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			p.t.Fatalf("workload: %v (exit %v)", r.err, p.cmd.ProcessState)
		}
		return strings.TrimSpace(r.s)
	case <-time.After(60 * time.Second):
		p.t.Fatalf("workload: no answer in 60s")
	}
	return ""
}

// do sends a command and returns its answer.
func (p *proc) do(format string, args ...any) string {
	p.t.Helper()
	fmt.Fprintf(p.in, format+"\n", args...)
	return p.line()
}

// object records fd of this process as an object of the table and returns its id.
func (h *harness) object(kind ObjectKind, fd int) uint32 {
	h.t.Helper()
	h.ids[kind]++
	o, err := ObjectOf(h.ids[kind], kind, fd)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.tab.PutObject(o); err != nil {
		h.t.Fatal(err)
	}
	return h.ids[kind]
}

type hmap struct {
	*maps.Map
	id uint32
}

func (h *harness) newMap(typ maps.Type, key, value, entries uint32) *hmap {
	h.t.Helper()
	m, err := maps.Create(&maps.Spec{Type: typ, KeySize: key, ValueSize: value, MaxEntries: entries, NumCPU: h.tab.NumCPU()}, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { m.Close() })
	return &hmap{Map: m, id: h.object(ObjectMap, m.FD())}
}

// u64s returns the value of key as u64s (per-CPU maps: all CPUs' values).
func (m *hmap) u64s(t testing.TB, key uint32) []uint64 {
	t.Helper()
	n := int(m.ValueSize()+7) / 8
	if m.Type().PerCPU() {
		n *= m.NumCPU()
	}
	buf := make([]byte, 8*n)
	k := binary.LittleEndian.AppendUint32(nil, key)
	if err := m.Lookup(k, buf, 0); err != nil {
		t.Fatalf("lookup %d: %v", key, err)
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(buf[8*i:])
	}
	return out
}

// sum returns the sum of a per-CPU u64 value.
func (m *hmap) sum(t testing.TB, key uint32) uint64 {
	var s uint64
	for _, v := range m.u64s(t, key) {
		s += v
	}
	return s
}

type loaded struct {
	code  uint32
	entry uint32
	maps  []uint32
	prog  *program.Program
}

// load verifies and compiles a kprobe program whose lddw map fds are indexes into ms.
func (h *harness) load(insns asm.Instructions, ms ...*hmap) *loaded {
	h.t.Helper()
	buf := &strings.Builder{}
	if err := insns.Marshal(writerFunc(func(b []byte) { buf.Write(b) }), binary.LittleEndian); err != nil {
		h.t.Fatal(err)
	}
	raw, err := isa.Decode([]byte(buf.String()))
	if err != nil {
		h.t.Fatal(err)
	}
	impl := map[helper.ID]helper.Func{}
	for _, id := range AgentHelpers {
		impl[helper.ID(id)] = func(*helper.Env, *[5]uint64) (uint64, error) { return 0, nil }
	}
	p, err := verifier.Verify(raw, &verifier.Options{
		Type:    program.Kprobe,
		CtxSize: 168,
		Maps: func(src uint8, ref int32) (program.MapInfo, error) {
			if ref < 0 || int(ref) >= len(ms) {
				return program.MapInfo{}, unix.EBADF
			}
			m := ms[ref]
			return program.MapInfo{ID: m.id, Type: uint32(m.Type()), KeySize: m.KeySize(), ValueSize: m.ValueSize(), MaxEntries: m.MaxEntries()}, nil
		},
		Helpers:      helper.ForType(uint32(program.Kprobe), impl),
		GPL:          true,
		PossibleCPUs: h.tab.NumCPU(),
	})
	if err != nil {
		h.t.Fatalf("verify: %v", err)
	}
	c, err := jit.Compile(p)
	if err != nil {
		h.t.Fatalf("compile: %v", err)
	}
	f, err := CodeFile(c)
	if err != nil {
		h.t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		h.t.Fatal(err)
	}
	h.fds = append(h.fds, fd)
	l := &loaded{code: h.object(ObjectCode, fd), entry: uint32(c.Entry), prog: p}
	for _, mi := range p.Maps {
		l.maps = append(l.maps, mi.ID)
	}
	return l
}

type writerFunc func([]byte)

func (w writerFunc) Write(b []byte) (int, error) { w(b); return len(b), nil }

// fileOffset returns the file offset of symbol sym of the ELF file at path.
func fileOffset(t testing.TB, path, sym string) uint64 {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, _ := f.Symbols()
	dyn, _ := f.DynamicSymbols()
	for _, s := range append(syms, dyn...) {
		if s.Name != sym || elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 {
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Filesz {
				return s.Value - p.Vaddr + p.Off
			}
		}
	}
	t.Fatalf("%s: no function %s", path, sym)
	return 0
}

// attach attaches l at function sym of the file at path and waits until every traced process
// applied it.
func (h *harness) attach(path, sym string, l *loaded, ret bool) uint64 {
	h.t.Helper()
	return h.attachAt(path, fileOffset(h.t, path, sym), l, ret)
}

// attachAt attaches l at file offset off of the file at path and waits until every traced
// process applied it.
func (h *harness) attachAt(path string, off uint64, l *loaded, ret bool) uint64 {
	h.t.Helper()
	pt, err := Resolve(path, off)
	if err != nil {
		h.t.Fatal(err)
	}
	id, err := h.tab.Attach(&Probe{Point: pt, Return: ret, Code: l.code, Entry: l.entry, Maps: l.maps})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.tab.Ring(5 * time.Second); err != nil {
		h.t.Fatal(err, h.states())
	}
	if st, _ := h.tab.Status(id); st.Failed != 0 {
		h.t.Fatalf("attach at %#x: %d processes failed: %s", off, st.Failed, st.LastError)
	}
	return id
}

func (h *harness) detach(id uint64) {
	h.t.Helper()
	if err := h.tab.Detach(id); err != nil {
		h.t.Fatal(err)
	}
	if err := h.tab.Ring(5 * time.Second); err != nil {
		h.t.Fatal(err, h.states())
	}
}

// states describes the registered processes' threads (state and the signal they wait in), for
// failure messages.
func (h *harness) states() string {
	var b strings.Builder
	for _, pid := range h.tab.Processes() {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/wchan", pid, task.Name()))
			f := strings.Fields(string(stat))
			if len(f) > 2 {
				fmt.Fprintf(&b, "\n  %d/%s %s %s", pid, task.Name(), f[2], wchan)
			}
		}
	}
	return b.String()
}

// countProg counts hits the way bpftrace's count() does: a non-atomic increment of a per-CPU
// array value.
func (h *harness) countProg() (*loaded, *hmap) {
	m := h.newMap(maps.PercpuArray, 4, 8, 1)
	return h.load(asm.Instructions{
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, 0),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}, m), m
}

// pt_regs offsets.
const (
	regBP = 32
	regAX = 80
	regSI = 104
	regDI = 112
	regIP = 128
	regSP = 152
)

// recordProg stores ctx fields at the given pt_regs offsets into array entries 0, 1, ... and
// counts its runs in the last entry (atomically).
func (h *harness) recordProg(offs ...int16) (*loaded, *hmap) {
	m := h.newMap(maps.Array, 4, 8, uint32(len(offs)+1))
	var insns asm.Instructions
	insns = append(insns, asm.Mov.Reg(asm.R6, asm.R1))
	for i, off := range offs {
		l := fmt.Sprintf("next%d", i)
		insns = append(insns,
			asm.StoreImm(asm.RFP, -4, int64(i), asm.Word),
			asm.LoadMapPtr(asm.R1, 0),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, l),
			asm.LoadMem(asm.R1, asm.R6, off, asm.DWord),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol(l),
		)
	}
	insns = append(insns,
		asm.StoreImm(asm.RFP, -4, int64(len(offs)), asm.Word),
		asm.LoadMapPtr(asm.R1, 0),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	)
	return h.load(insns, m), m
}

// textBytes reads n bytes of process pid at the address of symbol sym of its executable.
func textBytes(t testing.TB, pid int, path, sym string, n int) []byte {
	t.Helper()
	off := fileOffset(t, path, sym)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ino := st.Sys().(*syscall.Stat_t).Ino
	for _, line := range strings.Split(string(b), "\n") {
		var lo, hi, foff, inode uint64
		var perms, dev string
		if c, _ := fmt.Sscanf(line, "%x-%x %s %x %s %d", &lo, &hi, &perms, &foff, &dev, &inode); c != 6 || inode != ino {
			continue
		}
		if off >= foff && off < foff+(hi-lo) {
			mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
			if err != nil {
				t.Fatal(err)
			}
			defer mem.Close()
			out := make([]byte, n)
			if _, err := mem.ReadAt(out, int64(lo+off-foff)); err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	t.Fatalf("%s not mapped in %d", path, pid)
	return nil
}
