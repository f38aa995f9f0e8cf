package attach

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/maps"
)

func TestCountEntry(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	orig := textBytes(t, w.pid, work, "probed", 16)
	l, m := h.countProg()
	id := h.attach(work, "probed", l, false)
	if got := w.do("call 1000 1 2"); got != strconv.Itoa(1000*3+999*1000/2) {
		t.Fatalf("call: %s", got)
	}
	if n := m.sum(t, 0); n != 1000 {
		t.Fatalf("count = %d, want 1000", n)
	}
	h.detach(id)
	w.do("call 1000 1 2")
	if n := m.sum(t, 0); n != 1000 {
		t.Fatalf("count after detach = %d, want 1000", n)
	}
	if now := textBytes(t, w.pid, work, "probed", 16); string(now) != string(orig) {
		t.Fatalf("code after detach % x, want % x", now, orig)
	}
}

// addrOf returns the address of symbol sym of the file at path in process pid.
func addrOf(t *testing.T, pid int, path, sym string) uint64 {
	t.Helper()
	off := fileOffset(t, path, sym)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	ino := st.Sys().(*syscall.Stat_t).Ino
	for _, line := range strings.Split(string(b), "\n") {
		var lo, hi, foff, inode uint64
		var perms, dev string
		if c, _ := fmt.Sscanf(line, "%x-%x %s %x %s %d", &lo, &hi, &perms, &foff, &dev, &inode); c == 6 && inode == ino && off >= foff && off < foff+hi-lo {
			return lo + off - foff
		}
	}
	t.Fatalf("%s not mapped", path)
	return 0
}

func TestArgsAndReturn(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	el, em := h.recordProg(regDI, regSI, regIP)
	rl, rm := h.recordProg(regAX, regIP)
	h.attach(work, "probed", el, false)
	h.attach(work, "probed", rl, true)
	if got := w.do("call 3 5 7"); got != "39" {
		t.Fatalf("call: %s", got)
	}
	e := []uint64{em.u64s(t, 0)[0], em.u64s(t, 1)[0], em.u64s(t, 2)[0], em.u64s(t, 3)[0]}
	if e[0] != 5 || e[1] != 9 || e[2] != addrOf(t, w.pid, work, "probed") || e[3] != 3 {
		t.Errorf("entry: arg0 %d arg1 %d ip %#x runs %d; want 5 9 %#x 3", e[0], e[1], e[2], e[3], addrOf(t, w.pid, work, "probed"))
	}
	r := []uint64{rm.u64s(t, 0)[0], rm.u64s(t, 1)[0], rm.u64s(t, 2)[0]}
	if r[0] != 14 || r[2] != 3 {
		t.Errorf("return: retval %d runs %d; want 14 3", r[0], r[2])
	}
	// the return probe's ip is the return address, in main
	if main := addrOf(t, w.pid, work, "main"); r[1] < main || r[1] > main+4096 {
		t.Errorf("return: ip %#x, want an address in main (%#x)", r[1], main)
	}
	// nested return probes, and the frames of a longjmp that skipped a return
	h.attach(work, "jumpy", rl, true)
	if got := w.do("deep 10"); got != strconv.Itoa(2*(45+10*2)) {
		t.Fatalf("deep: %s", got)
	}
	h.attach(work, "escape", rl, true)
	if got := w.do("jmp 100"); got != "100" {
		t.Fatalf("jmp: %s", got)
	}
	if got := w.do("call 1 1 1"); got != "2" {
		t.Fatalf("call after longjmps: %s", got)
	}
	if runs := rm.u64s(t, 2)[0]; runs != 3+20+100+1 {
		t.Errorf("return probes ran %d times, want %d", runs, 3+20+100+1)
	}
}

func TestString(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	m := h.newMap(maps.Array, 4, 64, 2)
	l := h.load(asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, -80),
		asm.Mov.Imm(asm.R2, 64),
		asm.LoadMem(asm.R3, asm.R6, regDI, asm.DWord),
		asm.FnProbeReadUserStr.Call(),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, 0),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -80),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnMapUpdateElem.Call(),
		// a read of an unmapped address fails without harm
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, -80),
		asm.Mov.Imm(asm.R2, 64),
		asm.Mov.Imm(asm.R3, 4096),
		asm.FnProbeReadUserStr.Call(),
		asm.StoreMem(asm.RFP, -80, asm.R0, asm.DWord),
		asm.StoreImm(asm.RFP, -4, 1, asm.Word),
		asm.LoadMapPtr(asm.R1, 0),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -80),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnMapUpdateElem.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}, m)
	h.attach(work, "probed_str", l, false)
	long := strings.Repeat("x", 100)
	for _, s := range []string{"hello", long} {
		if got := w.do("str %s", s); got != strconv.Itoa(len(s)) {
			t.Fatalf("str: %s", got)
		}
		v := m.u64s(t, 0)
		b := make([]byte, 0, 64)
		for _, x := range v {
			b = binary.LittleEndian.AppendUint64(b, x)
		}
		want := s
		if len(want) > 63 {
			want = want[:63]
		}
		if got := string(b[:bytes.IndexByte(b, 0)]); got != want {
			t.Errorf("str() = %q, want %q", got, want)
		}
	}
	if e := int64(m.u64s(t, 1)[0]); e != -14 {
		t.Errorf("read of an unmapped address returned %d, want -EFAULT", e)
	}
}

// TestExactCounts: threads that share CPUs still count exactly with a non-atomic per-CPU
// increment (each run leases a CPU slot).
func TestExactCounts(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	l, m := h.countProg()
	h.attach(work, "probed", l, false)
	w.do("threads 8 100000")
	if n := m.sum(t, 0); n != 800000 {
		t.Fatalf("count = %d, want 800000", n)
	}
	if got := w.do("fork 1000"); got != "done 0" {
		t.Fatalf("fork: %s", got)
	}
	if n := m.sum(t, 0); n != 802000 {
		t.Fatalf("count after fork = %d, want 802000 (parent and child)", n)
	}
}

// TestBeforeMain: attachments that exist when a process starts are in place before main.
func TestBeforeMain(t *testing.T) {
	h := newHarness(t)
	work := filepath.Join(h.bin, "work")
	l, m := h.countProg()
	h.attach(work, "probed", l, false)
	w := h.start()
	if n := m.sum(t, 0); n != 1 {
		t.Fatalf("count = %d, want 1 (main's first call)", n)
	}
	w.do("call 10 0 0")
	if n := m.sum(t, 0); n != 11 {
		t.Fatalf("count = %d, want 11", n)
	}
}

// TestLibc probes a function of a shared library.
func TestLibc(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	libc := libcPath(t, w.pid)
	l, m := h.countProg()
	id := h.attach(libc, "getpid", l, false)
	w.do("getpid 500")
	if n := m.sum(t, 0); n != 500 {
		t.Fatalf("count = %d, want 500", n)
	}
	h.detach(id)
	w.do("getpid 500")
	if n := m.sum(t, 0); n != 500 {
		t.Fatalf("count after detach = %d, want 500", n)
	}
}

func libcPath(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && strings.Contains(f[5], "/libc.so") {
			return f[5]
		}
	}
	t.Fatal("no libc")
	return ""
}

// TestAttachDetachUnderLoad attaches and detaches 100 times while 8 threads call the probed
// function in a loop: the workload survives, counts what it should, and its code is the
// original after each detach.
func TestAttachDetachUnderLoad(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	orig := textBytes(t, w.pid, work, "probed", 16)
	l, m := h.countProg()
	rl, rm := h.recordProg(regAX)
	w.do("hammer 8")
	for i := range 100 {
		id := h.attach(work, "probed", l, false)
		var rid uint64
		if i%2 == 1 {
			rid = h.attach(work, "probed", rl, true)
		}
		time.Sleep(time.Millisecond)
		h.detach(id)
		if rid != 0 {
			h.detach(rid)
		}
		if now := textBytes(t, w.pid, work, "probed", 16); !bytes.Equal(now, orig) {
			t.Fatalf("round %d: code after detach % x, want % x", i, now, orig)
		}
	}
	calls, _ := strconv.Atoi(w.do("stop"))
	hits, rets := m.sum(t, 0), rm.u64s(t, 1)[0]
	t.Logf("%d calls, %d entry hits, %d return hits", calls, hits, rets)
	if hits == 0 || rets == 0 || hits > uint64(calls) {
		t.Fatalf("%d hits of %d calls", hits, calls)
	}
	if got := w.do("call 10 1 1"); got != "65" {
		t.Fatalf("call: %s", got)
	}
}

// TestPatchMidInstruction patches a function whose threads spend their time inside the bytes
// the jump displaces (a rep movsb four bytes after the entry): stopped threads must be moved to
// the relocated copy, or they would resume in the middle of the jump.
func TestPatchMidInstruction(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	orig := textBytes(t, w.pid, work, "slowcopy", 8)
	l, m := h.countProg()
	w.do("slow 4")
	for i := range 50 {
		id := h.attach(work, "slowcopy", l, false)
		time.Sleep(2 * time.Millisecond)
		h.detach(id)
		if now := textBytes(t, w.pid, work, "slowcopy", 8); !bytes.Equal(now, orig) {
			t.Fatalf("round %d: code after detach % x, want % x", i, now, orig)
		}
	}
	calls, _ := strconv.Atoi(w.do("stop"))
	t.Logf("%d calls, %d hits", calls, m.sum(t, 0))
	if m.sum(t, 0) == 0 {
		t.Fatal("no hits")
	}
}

// TestFlagsKept: a probe between a compare and the use of its flags leaves the flags as they
// were (the arithmetic flags, OF and DF), for compares around the signed and unsigned edges.
func TestFlagsKept(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	want := w.do("flags")
	l, m := h.countProg()
	id := h.attach(work, "flagcheck_at", l, false)
	if got := w.do("flags"); got != want {
		t.Errorf("flags with a probe: %s, without: %s", got, want)
	}
	if n := m.sum(t, 0); n != 128 {
		t.Errorf("%d hits, want 128", n)
	}
	h.detach(id)
}

// runScript runs testdata/script.sh with bash, with the agent when env is not nil.
func runScript(t *testing.T, env []string) string {
	t.Helper()
	cmd := exec.Command("bash", "testdata/script.sh")
	if env != nil {
		cmd.Env = env
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	return string(out)
}

// TestBash runs a bash script of subshells, pipelines, traps and background jobs in traced
// processes with probes on malloc in every one of them (entry and return), ten times, and
// once more while attachments change under it: its output is always the untraced one.
func TestBash(t *testing.T) {
	h := newHarness(t)
	want := runScript(t, nil)
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	probe := exec.Command(bash, "-c", "exit 0")
	probe.Env = h.env()
	if err := probe.Run(); err != nil {
		t.Fatal(err)
	}
	w := h.start()
	libc := libcPath(t, w.pid)
	l, m := h.countProg()
	rl, rm := h.recordProg(regAX)
	h.attach(libc, "malloc", l, false)
	h.attach(libc, "malloc", rl, true)
	for i := range 10 {
		if got := runScript(t, h.env()); got != want {
			t.Fatalf("run %d: output\n%s\nwant\n%s", i, got, want)
		}
	}
	if m.sum(t, 0) == 0 || rm.u64s(t, 1)[0] == 0 {
		t.Fatal("no malloc seen")
	}
	t.Logf("malloc: %d entries, %d returns", m.sum(t, 0), rm.u64s(t, 1)[0])
	done := make(chan struct{})
	go func() {
		defer close(done)
		l2, _ := h.countProg()
		for range 20 {
			id, err := h.tab.Attach(&Probe{Point: mustResolve(t, libc, "free"), Code: l2.code, Entry: l2.entry, Maps: l2.maps})
			if err != nil {
				t.Error(err)
				return
			}
			h.tab.Ring(time.Second)
			h.tab.Detach(id)
			h.tab.Ring(time.Second)
		}
	}()
	for i := 0; ; i++ {
		if got := runScript(t, h.env()); got != want {
			t.Fatalf("run %d while attaching: output\n%s\nwant\n%s", i, got, want)
		}
		select {
		case <-done:
			return
		default:
		}
	}
}

func mustResolve(t *testing.T, path, sym string) *Point {
	pt, err := Resolve(path, fileOffset(t, path, sym))
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

// TestPIDFilter: a probe limited to one process runs in it only.
func TestPIDFilter(t *testing.T) {
	h := newHarness(t)
	w1, w2 := h.start(), h.start()
	work := filepath.Join(h.bin, "work")
	l, m := h.countProg()
	pt := mustResolve(t, work, "probed")
	if _, err := h.tab.Attach(&Probe{Point: pt, Code: l.code, Entry: l.entry, Maps: l.maps, PID: w2.pid}); err != nil {
		t.Fatal(err)
	}
	if err := h.tab.Ring(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	w1.do("call 100 0 0")
	w2.do("call 10 0 0")
	if n := m.sum(t, 0); n != 10 {
		t.Fatalf("count = %d, want 10 (the second process only)", n)
	}
}

// TestBlockedThreads: threads that block every signal cannot be stopped; patching goes on
// without them (the jump is one aligned 8-byte store) and the probes count.
func TestBlockedThreads(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	w.do("idle 3")
	l, m := h.countProg()
	for range 5 {
		id := h.attach(work, "probed", l, false)
		w.do("threads 2 1000")
		h.detach(id)
		w.do("threads 2 1000")
	}
	if n := m.sum(t, 0); n != 10000 {
		t.Fatalf("count = %d, want 10000", n)
	}
}

// TestHelpers runs the current-task, time and output helpers in a traced process: the values
// go to an array and, through perf_event_output, to the perf ring of the run's CPU slot.
func TestHelpers(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	vals := h.newMap(maps.Array, 4, 48, 1)
	ncpu := h.tab.NumCPU()
	events := h.newMap(maps.PerfEventArray, 4, 4, uint32(ncpu))
	var rings []*maps.PerfRing
	for cpu := range ncpu {
		r, err := maps.NewPerfRing(cpu, 4*4096, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		if err := r.SetDataSize(4 * 4096); err != nil {
			t.Fatal(err)
		}
		r.SetEnabled(true)
		h.ids[ObjectRing]++
		id := h.ids[ObjectRing]
		o, err := ObjectOf(id, ObjectRing, r.FD())
		if err != nil {
			t.Fatal(err)
		}
		if err := h.tab.PutObject(o); err != nil {
			t.Fatal(err)
		}
		if err := events.Update(binary.LittleEndian.AppendUint32(nil, uint32(cpu)), binary.LittleEndian.AppendUint32(nil, id), 0); err != nil {
			t.Fatal(err)
		}
		rings = append(rings, r)
	}
	l := h.load(asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetCurrentPidTgid.Call(),
		asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord),
		asm.FnGetCurrentUidGid.Call(),
		asm.StoreMem(asm.RFP, -16, asm.R0, asm.DWord),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, -24, asm.R0, asm.DWord),
		asm.FnGetSmpProcessorId.Call(),
		asm.StoreMem(asm.RFP, -32, asm.R0, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, -48),
		asm.Mov.Imm(asm.R2, 16),
		asm.FnGetCurrentComm.Call(),
		asm.StoreImm(asm.RFP, -52, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, 0),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -52),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -48),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnMapUpdateElem.Call(),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, 1),
		asm.LoadImm(asm.R3, 0xffffffff, asm.DWord),
		asm.Mov.Reg(asm.R4, asm.RFP),
		asm.Add.Imm(asm.R4, -48),
		asm.Mov.Imm(asm.R5, 48),
		asm.FnPerfEventOutput.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}, vals, events)
	h.attach(work, "probed", l, false)
	var before, after unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &before)
	w.do("call 3 0 0")
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &after)
	v := vals.u64s(t, 0)
	comm := string(bytes.TrimRight(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, v[0]), v[1]), "\x00"))
	if want := uint64(w.pid)<<32 | uint64(w.pid); v[5] != want {
		t.Errorf("pid_tgid %#x, want %#x", v[5], want)
	}
	if want := uint64(os.Getgid())<<32 | uint64(os.Getuid()); v[4] != want {
		t.Errorf("uid_gid %#x, want %#x", v[4], want)
	}
	if v[3] < uint64(before.Nano()) || v[3] > uint64(after.Nano()) {
		t.Errorf("ktime %d outside [%d, %d]", v[3], before.Nano(), after.Nano())
	}
	if v[2] >= uint64(ncpu) {
		t.Errorf("cpu %d of %d", v[2], ncpu)
	}
	if comm != "work" {
		t.Errorf("comm %q", comm)
	}
	samples := 0
	for cpu, r := range rings {
		for _, rec := range perfSamples(t, r) {
			samples++
			if len(rec) < 48 || binary.LittleEndian.Uint64(rec[16:]) != uint64(cpu) || binary.LittleEndian.Uint64(rec[40:]) != v[5] {
				t.Errorf("ring %d: sample % x", cpu, rec)
			}
		}
	}
	if samples != 3 {
		t.Errorf("%d samples in the perf rings, want 3", samples)
	}
}

// perfSamples returns the raw data of the PERF_RECORD_SAMPLE records in ring r.
func perfSamples(t *testing.T, r *maps.PerfRing) [][]byte {
	size := int(r.DataSize())
	mem, err := unix.Mmap(r.FD(), 0, 4096+size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	head := binary.LittleEndian.Uint64(mem[1024:])
	data := mem[4096:]
	var out [][]byte
	for pos := uint64(0); pos < head; {
		at := func(i uint64) byte { return data[(pos+i)%uint64(size)] }
		hdr := make([]byte, 8)
		for i := range hdr {
			hdr[i] = at(uint64(i))
		}
		typ, rsize := binary.LittleEndian.Uint32(hdr), uint64(binary.LittleEndian.Uint16(hdr[6:]))
		if rsize == 0 {
			t.Fatalf("empty record at %d", pos)
		}
		if typ == 9 { // PERF_RECORD_SAMPLE: u32 size, then the raw data
			rec := make([]byte, rsize-8)
			for i := range rec {
				rec[i] = at(8 + uint64(i))
			}
			n := binary.LittleEndian.Uint32(rec)
			out = append(out, rec[4:4+n])
		}
		pos += rsize
	}
	return out
}

// TestForkChildGetsLaterAttach: a fork child registers itself and then syncs, so an attachment
// made after the fork reaches it, whether the server saw its registration or not.
func TestForkChildGetsLaterAttach(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	var child int
	if _, err := fmt.Sscanf(w.do("forklater 100"), "child %d", &child); err != nil {
		t.Fatal(err)
	}
	l, m := h.countProg()
	h.attach(work, "probed", l, false)
	for i := 0; !slices.Contains(h.tab.Processes(), child); i++ {
		if i == 1000 {
			t.Fatalf("child %d is not registered: %v", child, h.tab.Processes())
		}
		time.Sleep(time.Millisecond)
	}
	if got := w.do("release"); got != "done 0" {
		t.Fatalf("release: %s", got)
	}
	if n := m.sum(t, 0); n != 100 {
		t.Fatalf("count = %d, want 100 (the child's calls)", n)
	}
}

// TestHostSignal: a host that uses the doorbell's signal for itself keeps receiving it, and the
// agent keeps its doorbell.
func TestHostSignal(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	if got := w.do("host58"); got != "3" {
		t.Fatalf("the host's handler ran %s times, want 3", got)
	}
	l, m := h.countProg()
	h.attach(work, "probed", l, false)
	w.do("call 10 0 0")
	if n := m.sum(t, 0); n != 10 {
		t.Fatalf("count = %d, want 10", n)
	}
}
