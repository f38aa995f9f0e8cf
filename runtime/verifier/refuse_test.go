package verifier

import (
	"bytes"
	"strings"
	"syscall"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// tracingHelpers offers the helpers a kprobe program may call (those the runtime knows).
func tracingHelpers(t testing.TB) *helper.Table {
	tab := helper.NewTable()
	for _, id := range []helper.ID{
		helper.MapLookupElem, helper.MapUpdateElem, helper.MapDeleteElem, helper.ProbeRead, helper.KtimeGetNS,
		helper.TracePrintk, helper.GetPrandomU32, helper.GetSmpProcessorID, helper.TailCall,
		helper.GetCurrentPidTgid, helper.GetCurrentUIDGid, helper.GetCurrentComm, helper.PerfEventRead,
		helper.PerfEventOutput, helper.GetStackID, helper.GetCurrentTask, helper.ProbeReadStr, helper.GetStack,
		helper.ProbeReadUser, helper.ProbeReadKernel, helper.ProbeReadUserStr, helper.ProbeReadKernelStr,
		helper.RingbufOutput, helper.RingbufReserve, helper.RingbufSubmit, helper.RingbufDiscard,
		helper.RingbufQuery, helper.KtimeGetBootNS, helper.KtimeGetCoarseNS, helper.SendSignal,
	} {
		if err := tab.Register(id, nil); err != nil {
			t.Fatal(err)
		}
	}
	return tab
}

type verdictCase struct {
	name  string
	typ   program.Type
	insns []isa.Instruction
}

// verifyLike runs our verifier as the kernel would for a program of a kernel type.
func verifyLike(t testing.TB, k *kernel, c verdictCase) (string, syscall.Errno) {
	var log bytes.Buffer
	opts := &Options{Type: c.typ, Helpers: tracingHelpers(t), GPL: true, Log: &log, LogLevel: 1}
	if k != nil {
		opts.Maps = k.resolve
	}
	_, err := Verify(c.insns, opts)
	if err == nil {
		return log.String(), 0
	}
	return log.String(), Errno(err)
}

// TestRefusalsMatchKernel loads unsafe and malformed programs into the kernel and into our
// verifier: both must refuse them with the same errno, and for these the same reason.
func TestRefusalsMatchKernel(t *testing.T) {
	k := newKernel(t)
	array := k.createMap(mapTypeArray, 4, 8, 4, 0)
	hash := k.createMap(mapTypeHash, 8, 16, 16, 0)
	kp := program.Kprobe
	cases := []verdictCase{
		{"uninitialised register", kp, prog(movr(0, 2), exit())},
		{"uninitialised r0 at exit", kp, prog(exit())},
		{"write to r10", kp, prog(mov(10, 0), mov(0, 0), exit())},
		{"add to r10", kp, prog(alu(isa.ALUAdd, 10, 8), mov(0, 0), exit())},
		{"jump out of range", kp, prog(mov(0, 0), ja(5), exit())},
		{"jump backwards out of range", kp, prog(mov(0, 0), ja(-3), exit())},
		{"jump into lddw", kp, prog(jmp(isa.JmpJEQ, 1, 0, 1), lddw(0, 0, 1), exit())},
		{"stack read below frame", kp, prog(ldx(isa.SizeDW, 0, 10, -520), exit())},
		{"stack write above frame", kp, prog(st(isa.SizeDW, 10, 0, 1), mov(0, 0), exit())},
		{"stack write straddling", kp, prog(st(isa.SizeDW, 10, -4, 1), mov(0, 0), exit())},
		{"misaligned stack", kp, prog(st(isa.SizeDW, 10, -12, 1), mov(0, 0), exit())},
		{"helper key straddling the stack's top", kp, prog(st(isa.SizeW, 10, -4, 0), movr(2, 10), alu(isa.ALUAdd, 2, -4),
			lddw(1, isa.PseudoMapFD, uint64(hash)), call(1), mov(0, 0), exit())},
		{"helper key below the stack", kp, prog(movr(2, 10), alu(isa.ALUAdd, 2, -516),
			lddw(1, isa.PseudoMapFD, uint64(hash)), call(1), mov(0, 0), exit())},
		{"unknown opcode", kp, prog(isa.Make(0xff, 0, 0, 0, 0), exit())},
		{"neg with register source", kp, prog(mov(0, 1), isa.Make(0x8f, 0, 1, 0, 0), exit())},
		{"truncated lddw", kp, prog(mov(0, 0), isa.Make(isa.OpLdDW, 0, 0, 0, 1))},
		{"lddw with bad second slot", kp, prog(isa.Make(isa.OpLdDW, 0, 0, 0, 1), isa.Make(0x07, 0, 0, 0, 1), exit())},
		{"falls off the end", kp, prog(mov(0, 0))},
		{"unreachable", kp, prog(mov(0, 0), exit(), mov(0, 1), exit())},
		{"scalar dereference", kp, prog(mov(1, 64), ldx(isa.SizeDW, 0, 1, 0), exit())},
		{"null dereference", kp, prog(st(isa.SizeDW, 10, -8, 0), movr(2, 10), alu(isa.ALUAdd, 2, -8),
			lddw(1, isa.PseudoMapFD, uint64(hash)), call(1), ldx(isa.SizeDW, 0, 0, 0), exit())},
		{"array lookup with an unknown key", kp, prog(call(int32(helper.GetPrandomU32)), stx(isa.SizeW, 10, 0, -4), movr(2, 10), alu(isa.ALUAdd, 2, -4),
			lddw(1, isa.PseudoMapFD, uint64(array)), call(1), ldx(isa.SizeDW, 0, 0, 0), exit())},
		{"arithmetic on maybe-null", kp, prog(st(isa.SizeDW, 10, -8, 0), movr(2, 10), alu(isa.ALUAdd, 2, -8),
			lddw(1, isa.PseudoMapFD, uint64(hash)), call(1), alu(isa.ALUAdd, 0, 8), mov(0, 0), exit())},
		{"map value past its end", kp, prog(st(isa.SizeW, 10, -4, 0), movr(2, 10), alu(isa.ALUAdd, 2, -4),
			lddw(1, isa.PseudoMapFD, uint64(array)), call(1), jmp(isa.JmpJEQ, 0, 0, 1),
			ldx(isa.SizeDW, 0, 0, 8), mov(0, 0), exit())},
		{"map value unbounded index", kp, prog(st(isa.SizeW, 10, -4, 0), movr(2, 10), alu(isa.ALUAdd, 2, -4),
			lddw(1, isa.PseudoMapFD, uint64(array)), call(1), jmp(isa.JmpJEQ, 0, 0, 4),
			ldx(isa.SizeDW, 1, 0, 0), alur(isa.ALUAdd, 0, 1), ldx(isa.SizeB, 0, 0, 0), mov(0, 0), mov(0, 0), exit())},
		{"unknown helper", kp, prog(call(100000), mov(0, 0), exit())},
		{"helper not for this type", program.SocketFilter, prog(call(int32(helper.ProbeRead)), mov(0, 0), exit())},
		{"helper arg of wrong type", kp, prog(call(1), mov(0, 0), exit())},
		{"helper arg uninitialised", kp, prog(lddw(1, isa.PseudoMapFD, uint64(array)), call(1), mov(0, 0), exit())},
		{"helper key outside the stack", kp, prog(movr(2, 10), lddw(1, isa.PseudoMapFD, uint64(hash)), call(1), mov(0, 0), exit())},
		{"helper size unbounded", kp, prog(movr(1, 10), alu(isa.ALUAdd, 1, -8), call(int32(helper.KtimeGetNS)), movr(2, 0),
			movr(1, 10), alu(isa.ALUAdd, 1, -8), mov(3, 0), call(int32(helper.ProbeReadUser)), mov(0, 0), exit())},
		{"helper zero size", kp, prog(movr(1, 10), alu(isa.ALUAdd, 1, -8), mov(2, 0), call(int32(helper.GetCurrentComm)), mov(0, 0), exit())},
		{"local call out of range", kp, prog(callLocal(10), mov(0, 0), exit())},
		{"runaway recursion", kp, prog(callLocal(1), exit(), callLocal(-1), mov(0, 0), exit())},
		{"pointer multiplication", kp, prog(movr(0, 10), alu(isa.ALUMul, 0, 2), mov(0, 0), exit())},
		{"pointer bitwise and", kp, prog(movr(0, 10), alu(isa.ALUAnd, 0, 2), mov(0, 0), exit())},
		{"32-bit pointer arithmetic", kp, prog(movr(0, 10), alu32(isa.ALUAdd, 0, 2), mov(0, 0), exit())},
		{"pointer plus pointer", kp, prog(movr(0, 10), alur(isa.ALUAdd, 0, 10), mov(0, 0), exit())},
		{"scalar minus pointer", kp, prog(mov(0, 0), alur(isa.ALUSub, 0, 10), mov(0, 0), exit())},
		{"ctx variable access", kp, prog(call(int32(helper.GetPrandomU32)), alu(isa.ALUAnd, 0, 8), alur(isa.ALUAdd, 1, 0), ldx(isa.SizeDW, 0, 1, 0), exit())},
		{"ctx write", kp, prog(st(isa.SizeDW, 1, 0, 0), mov(0, 0), exit())},
		{"ctx beyond pt_regs", kp, prog(ldx(isa.SizeDW, 0, 1, 168), exit())},
		{"modified ctx", kp, prog(alu(isa.ALUAdd, 1, 8), ldx(isa.SizeDW, 0, 1, 0), exit())},
		{"div by zero immediate", kp, prog(mov(0, 1), alu(isa.ALUDiv, 0, 0), exit())},
		{"shift out of range", kp, prog(mov(0, 1), alu(isa.ALULsh, 0, 64), exit())},
		{"reserved field", kp, prog(isa.Make(isa.OpMov64Imm, 0, 1, 0, 0), exit())},
		{"bad register", kp, prog(isa.Make(isa.OpMov64Imm, 11, 0, 0, 0), mov(0, 0), exit())},
		{"unreleased ringbuf", kp, prog(lddw(1, isa.PseudoMapFD, uint64(hash)), mov(2, 8), mov(3, 0), call(int32(helper.RingbufReserve)), mov(0, 0), exit())},
		{"lookup on bad map fd", kp, prog(lddw(1, isa.PseudoMapFD, 999), mov(0, 0), exit())},
		{"infinite loop", kp, prog(mov(0, 0), ja(-1), exit())},
		{"GPL helper from MIT", kp, prog(call(int32(helper.ProbeReadUser)), mov(0, 0), exit())},
		{"misaligned atomic on the stack", kp, prog(st(isa.SizeDW, 10, -8, 0), mov(1, 1),
			isa.Make(isa.OpStxAtomW, 10, 1, -6, isa.AtomicAdd), mov(0, 0), exit())},
		{"misaligned atomic on a map value", kp, prog(st(isa.SizeW, 10, -4, 0), movr(2, 10), alu(isa.ALUAdd, 2, -4),
			lddw(1, isa.PseudoMapFD, uint64(array)), call(1), mov(1, 1),
			isa.Make(isa.OpStxAtomDW, 0, 1, 4, isa.AtomicAdd), mov(0, 0), exit())},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			gpl := c.name != "GPL helper from MIT"
			klog, kerr := k.load(c.typ, c.insns, gpl)
			var log bytes.Buffer
			opts := &Options{Type: c.typ, Helpers: tracingHelpers(t), GPL: gpl, Log: &log, LogLevel: 1, Maps: k.resolve}
			if c.typ == program.SocketFilter {
				opts.Helpers = helper.NewTable()
			}
			_, err := Verify(c.insns, opts)
			ours := syscall.Errno(0)
			if err != nil {
				ours = Errno(err)
			}
			if kerr == 0 {
				t.Fatalf("the kernel accepts this program; the case is wrong:\n%s", klog)
			}
			if ours != kerr {
				t.Fatalf("errno: ours %v (%v), kernel %v (%q)", ours, err, kerr, lastError(klog))
			}
			if got, want := lastError(log.String()), lastError(klog); got != want {
				t.Errorf("message: ours %q, kernel %q", got, want)
			}
		})
	}
}

// TestConstantArrayKeys checks that an array lookup with a known in-bounds key is not NULL, as
// Linux 6.18 decides, whether the key was spilled as a number or written as zero bytes.
func TestConstantArrayKeys(t *testing.T) {
	k := newKernel(t)
	array := k.createMap(mapTypeArray, 4, 8, 4, 0)
	deref := prog(movr(2, 10), alu(isa.ALUAdd, 2, -4), lddw(1, isa.PseudoMapFD, uint64(array)), call(1),
		ldx(isa.SizeDW, 0, 0, 0), exit())
	for _, c := range []struct {
		name  string
		key   []isa.Instruction
		wants bool // the kernel accepts
	}{
		{"zero bytes", prog(st(isa.SizeW, 10, -4, 0)), true},
		{"zero bytes from a register", prog(mov(1, 0), stx(isa.SizeW, 10, 1, -4)), true},
		{"out of bounds", prog(mov(1, 0), stx(isa.SizeDW, 10, 1, -8), st(isa.SizeW, 10, -4, 9)), false},
		{"unknown key", prog(call(int32(helper.GetPrandomU32)), stx(isa.SizeW, 10, 0, -4)), false},
	} {
		insns := prog(c.key, deref)
		_, kerr := k.load(program.Kprobe, insns, true)
		if (kerr == 0) != c.wants {
			t.Fatalf("%s: the kernel answers %v; the case is wrong", c.name, kerr)
		}
		_, err := Verify(insns, &Options{Type: program.Kprobe, Helpers: tracingHelpers(t), GPL: true, Maps: k.resolve})
		if (err == nil) != c.wants {
			t.Errorf("%s: ours %v, the kernel %v", c.name, err, kerr)
		}
	}
}

// TestLogStartsWithTheEntryState checks the first line of a refusal's log, which tools print.
func TestLogStartsWithTheEntryState(t *testing.T) {
	var log bytes.Buffer
	_, err := Verify(prog(call(1), exit()), &Options{Type: program.Kprobe, Helpers: tracingHelpers(t), Log: &log, LogLevel: 1})
	if err == nil {
		t.Fatal("accepted")
	}
	want := "0: R1=ctx() R10=fp0\n0: (85) call bpf_map_lookup_elem#1\nR1 type=ctx expected=map_ptr\n"
	if got := log.String(); !strings.HasPrefix(got, want) {
		t.Errorf("log:\n%s\nwant it to start with:\n%s", got, want)
	}
}

// TestLinkedCopies checks that a bound learnt on a copy of a scalar applies to the original, as
// the kernel's find_equal_scalars does: compiled code bounds-checks one register and uses another.
func TestLinkedCopies(t *testing.T) {
	k := newKernel(t)
	array := k.createMap(mapTypeArray, 4, 64, 1, 0)
	insns := prog(
		st(isa.SizeW, 10, -4, 0), movr(2, 10), alu(isa.ALUAdd, 2, -4),
		lddw(1, isa.PseudoMapFD, uint64(array)), call(1),
		jmp(isa.JmpJEQ, 0, 0, 8),
		movr(6, 0),
		call(int32(helper.GetPrandomU32)),
		movr(1, 0),                // r1 and r0 are copies
		jmp(isa.JmpJGT, 1, 56, 4), // bound the copy
		alur(isa.ALUAdd, 6, 0),    // use the original
		ldx(isa.SizeDW, 0, 6, 0),
		mov(0, 0), exit(),
		mov(0, 0), exit(),
	)
	klog, kerr := k.load(program.Kprobe, insns, true)
	if kerr != 0 {
		t.Fatalf("the kernel refuses the case: %v\n%s", kerr, klog)
	}
	p, err := Verify(insns, &Options{Type: program.Kprobe, Helpers: tracingHelpers(t), GPL: true, Maps: k.resolve})
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	for i, c := range p.Checks {
		if c != program.CheckNone {
			t.Errorf("instruction %d needs a run-time check: the bound did not reach the original", i)
		}
	}
}
