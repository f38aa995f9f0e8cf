package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/isa"
)

// vm is the ebpfu-vm binary built from this source for the tests.
var vm string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ebpfu-vm-test")
	if err != nil {
		panic(err)
	}
	vm = filepath.Join(dir, "ebpfu-vm")
	build := exec.Command(goTool(), "build", "-o", vm, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		panic("building ebpfu-vm: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goTool returns the go command: from PATH, else the toolchain that built the test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// result is one run of the binary.
type result struct {
	code   int
	stdout string
	stderr string
}

// invoke runs ebpfu-vm as the bpf_conformance runner does: program hex on stdin, memory hex as
// the first argument when there is memory, then the options.
func invoke(t *testing.T, prog []byte, mem []byte, opts ...string) result {
	t.Helper()
	var args []string
	if mem != nil {
		args = append(args, conformance.FormatHex(mem))
	}
	args = append(args, opts...)
	return invokeRaw(t, conformance.FormatHex(prog)+"\n", args...)
}

func invokeRaw(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, vm, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("ebpfu-vm did not finish within 20s (stdin %q)", stdin)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

func asm(t *testing.T, src string) []byte {
	t.Helper()
	insns, err := conformance.Assemble(src)
	if err != nil {
		t.Fatal(err)
	}
	return isa.Encode(insns)
}

// TestConformanceProtocol runs every bpf_conformance file through the binary.
func TestConformanceProtocol(t *testing.T) {
	dir, ok := conformance.FindDir()
	if !ok {
		t.Skipf("bpf_conformance test files not found (looked in %q; set %s)", dir, conformance.DirEnv)
	}
	tests, err := conformance.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	passed := 0
	for _, tc := range tests {
		r := invoke(t, isa.Encode(tc.Insns), tc.Mem)
		v, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(r.stdout, "0x")), 16, 64)
		if r.code != 0 || err != nil || v != tc.Result {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %#x", tc.Name, r.code, r.stdout, r.stderr, tc.Result)
			continue
		}
		passed++
	}
	if passed != 313 {
		t.Errorf("%d/%d files passed, want 313", passed, len(tests))
	}
}

func TestProtocolForms(t *testing.T) {
	prog := asm(t, "mov %r0, %r2\nexit")
	// Memory as one argument, hex without spaces, options after it.
	if r := invokeRaw(t, "b70000002a0000009500000000000000\n"); r.code != 0 || r.stdout != "2a\n" {
		t.Errorf("compact hex: %+v", r)
	}
	if r := invoke(t, prog, []byte{1, 2, 3}); r.code != 0 || r.stdout != "3\n" {
		t.Errorf("memory length: %+v", r)
	}
	if r := invoke(t, prog, []byte{1, 2, 3}, "--budget", "100"); r.code != 0 || r.stdout != "3\n" {
		t.Errorf("memory then options: %+v", r)
	}
	if r := invoke(t, prog, nil, "--budget=5"); r.code != 0 || r.stdout != "0\n" {
		t.Errorf("options without memory: %+v", r)
	}
	loop := asm(t, "mov %r0, 0\nl:\nadd %r0, 1\njlt %r0, 1000000, l\nexit")
	if r := invoke(t, loop, nil); r.code != 0 || r.stdout != "f4240\n" {
		t.Errorf("a million iterations: %+v", r)
	}
	r := invoke(t, loop, nil, "--budget", "1000")
	wantStopped(t, "budget", r)
	if !strings.Contains(r.stderr, "budget") {
		t.Errorf("budget fault does not say so: %q", r.stderr)
	}
	// Writes to the memory stay in the run; the result is r0 only.
	if r := invoke(t, asm(t, "stb [%r1], 9\nldxb %r0, [%r1]\nexit"), []byte{1}); r.code != 0 || r.stdout != "9\n" {
		t.Errorf("write to memory: %+v", r)
	}
}

// wantStopped checks the contract for a program that must not run to completion: a non-zero
// exit and one line on standard error, no Go panic or trace.
func wantStopped(t *testing.T, name string, r result) {
	t.Helper()
	if r.code == 0 {
		t.Errorf("%s: exit 0 (stdout %q), want a refusal or a fault", name, r.stdout)
		return
	}
	if r.stdout != "" {
		t.Errorf("%s: stdout %q, want nothing", name, r.stdout)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 1 || lines[0] == "" || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("%s: stderr is not one line: %q", name, r.stderr)
	}
	for _, bad := range []string{"panic", "goroutine", "SIGSEGV", "runtime error"} {
		if strings.Contains(r.stderr, bad) {
			t.Errorf("%s: stderr mentions %q: %q", name, bad, r.stderr)
		}
	}
	if r.code == exitBug {
		t.Errorf("%s: exit %d (an internal error): %q", name, r.code, r.stderr)
	}
}

// TestUnsafePrograms holds programs that must be refused by the verifier or stopped at run time.
func TestUnsafePrograms(t *testing.T) {
	slot := func(op, regs uint8, off int16, imm int32) []byte {
		return isa.Encode([]isa.Instruction{{Op: op, Regs: regs, Off: off, Imm: imm}})
	}
	exit := slot(isa.OpExit, 0, 0, 0)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	mem := []byte{1, 2, 3, 4}
	cases := []struct {
		name string
		prog []byte
		mem  []byte
	}{
		{"uninitialised r0 at exit", asm(t, "exit"), nil},
		{"uninitialised r5 read", asm(t, "mov %r0, %r5\nexit"), nil},
		{"uninitialised r3 as pointer", asm(t, "ldxdw %r0, [%r3]\nexit"), mem},
		{"uninitialised stack read", asm(t, "ldxdw %r0, [%r10-8]\nexit"), nil},
		{"jump past the end", asm(t, "mov %r0, 0\nja +5\nexit"), nil},
		{"jump before the start", asm(t, "mov %r0, 0\nja -3\nexit"), nil},
		{"jump into lddw", asm(t, "mov %r0, 0\nja +1\nlddw %r0, 1\nexit"), nil},
		{"ja32 out of range", asm(t, "mov %r0, 0\nja32 +1000000\nexit"), nil},
		{"write to r10", asm(t, "mov %r10, 0\nmov %r0, 0\nexit"), nil},
		{"add to r10", asm(t, "add %r10, 8\nmov %r0, 0\nexit"), nil},
		{"stack below the frame", asm(t, "stdw [%r10-520], 1\nmov %r0, 0\nexit"), nil},
		{"stack above the frame", asm(t, "mov %r0, 0\nstdw [%r10], 1\nexit"), nil},
		{"stack read above the frame", asm(t, "ldxdw %r0, [%r10+8]\nexit"), nil},
		{"stack with a variable offset", asm(t, "mov %r0, 0\nldxb %r2, [%r1]\nlsh %r2, 12\nmov %r3, %r10\nsub %r3, %r2\nstb [%r3], 1\nexit"), []byte{1}},
		{"unknown opcode", cat(slot(0xff, 0, 0, 0), exit), nil},
		{"unknown ALU op", cat(slot(0xe7, 0, 0, 0), exit), nil},
		{"unknown jump op", cat(slot(0xe5, 0, 0, 0), exit), nil},
		{"register 11", cat(slot(isa.OpMov64Reg, 0xb0, 0, 0), exit), nil},
		{"truncated lddw", slot(isa.OpLdDW, 0, 0, 1), nil},
		{"lddw with a bad second slot", cat(slot(isa.OpLdDW, 0, 0, 1), slot(0xb7, 0, 0, 0), exit), nil},
		{"not a whole instruction", []byte{0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0}, nil},
		{"fall off the end", asm(t, "mov %r0, 0"), nil},
		{"load past the buffer", asm(t, "ldxw %r0, [%r1+1]\nexit"), mem},
		{"store past the buffer", asm(t, "mov %r0, 0\nstdw [%r1], 1\nexit"), mem},
		{"load before the buffer", asm(t, "ldxb %r0, [%r1-1]\nexit"), mem},
		{"load with the length as offset", asm(t, "add %r1, %r2\nldxb %r0, [%r1]\nexit"), mem},
		{"null dereference", asm(t, "mov %r1, 0\nldxdw %r0, [%r1]\nexit"), nil},
		{"r1 without memory", asm(t, "ldxb %r0, [%r1]\nexit"), nil},
		{"scalar dereference", asm(t, "mov %r1, 4096\nldxdw %r0, [%r1]\nexit"), nil},
		{"large scalar store", asm(t, "lddw %r1, 0x7fff00000000\nstdw [%r1], 0\nmov %r0, 0\nexit"), nil},
		{"pointer from memory contents", asm(t, "ldxdw %r1, [%r1]\nldxdw %r0, [%r1]\nexit"), []byte{0, 0x10, 0, 0, 0, 0, 0, 0}},
		{"unknown helper", asm(t, "call 99999\nexit"), nil},
		{"helper not offered", asm(t, "call 6\nexit"), nil},
		{"helper 0", asm(t, "call 0\nexit"), nil},
		{"callx to an unknown helper", asm(t, "mov %r1, 7777\ncall %r1\nexit"), nil},
		{"callx with an uninitialised register", asm(t, "call %r4\nexit"), nil},
		{"helper arg: null buffer", asm(t, "mov %r1, 0\nmov %r2, 16\ncall 16\nexit"), nil},
		{"helper arg: buffer past the stack", asm(t, "mov %r1, %r10\nadd %r1, -8\nmov %r2, 16\ncall 16\nexit"), nil},
		{"helper arg: scalar buffer", asm(t, "mov %r1, 4096\nmov %r2, 16\ncall 16\nexit"), nil},
		{"kfunc call", asm(t, "call runtime 1\nexit"), nil},
		{"local call past the end", asm(t, "call local +10\nexit"), nil},
		{"local call before the start", asm(t, "call local -5\nexit"), nil},
		{"runaway recursion", asm(t, "f:\ncall local f\nexit"), nil},
		{"mutual recursion", asm(t, "mov %r0, 0\ncall local f\nexit\nf:\ncall local g\nexit\ng:\ncall local f\nexit"), nil},
		{"infinite loop", asm(t, "mov %r0, 0\nl:\nja l\nexit"), nil},
		{"misaligned atomic", asm(t, "stdw [%r10-16], 0\nstdw [%r10-8], 0\nmov %r1, 1\nlock add [%r10-12], %r1\nmov %r0, 0\nexit"), nil},
		{"legacy packet load", asm(t, "mov %r6, %r1\nldabsb 0\nexit"), mem},
		{"neg with a register", cat(slot(isa.ClassALU64|isa.ALUNeg|isa.SrcX, 0x10, 0, 0), exit), nil},
		{"division with off 2", cat(slot(isa.ClassALU64|isa.ALUDiv|isa.SrcK, 0, 2, 1), exit), nil},
		{"bad byte-swap width", cat(slot(isa.ClassALU|isa.ALUEnd, 0, 0, 8), exit), nil},
	}
	for _, c := range cases {
		for _, opts := range [][]string{nil, {"--jit"}} {
			r := invoke(t, c.prog, c.mem, opts...)
			wantStopped(t, strings.TrimSpace(c.name+" "+strings.Join(opts, " ")), r)
		}
	}
}

func TestUsage(t *testing.T) {
	for name, r := range map[string]result{
		"empty stdin":    invokeRaw(t, ""),
		"not hex":        invokeRaw(t, "hello\n"),
		"odd digits":     invokeRaw(t, "b70\n"),
		"unknown option": invokeRaw(t, "b7000000000000009500000000000000\n", "--frob"),
		"bad memory":     invokeRaw(t, "b7000000000000009500000000000000\n", "zz"),
		"bad budget":     invokeRaw(t, "b7000000000000009500000000000000\n", "--budget", "many"),
	} {
		wantStopped(t, name, r)
		if r.code != exitUsage {
			t.Errorf("%s: exit %d, want %d", name, r.code, exitUsage)
		}
	}
}

func TestJITFlag(t *testing.T) {
	// Until the JIT is wired, --jit refuses in one line; once it is, it must give the right r0.
	r := invoke(t, asm(t, "mov %r0, 7\nexit"), nil, "--jit")
	if r.code == 0 {
		if r.stdout != "7\n" {
			t.Errorf("--jit: stdout %q, want 7", r.stdout)
		}
		return
	}
	wantStopped(t, "--jit", r)
}

func TestParseArgs(t *testing.T) {
	o, err := parseArgs([]string{"01  02  ", "--jit", "--budget", "0x10"})
	if err != nil || !o.hasMem || !bytes.Equal(o.mem, []byte{1, 2}) || !o.jit || o.budget != 16 {
		t.Errorf("parseArgs: %+v, %v", o, err)
	}
	if _, err := parseArgs([]string{"--jit", "0102"}); err == nil {
		t.Error("memory after an option was accepted")
	}
	if _, err := parseArgs([]string{"--budget"}); err == nil {
		t.Error("--budget without a number was accepted")
	}
}

// TestReservedFields holds instructions whose unused fields are not zero, which the kernel
// refuses ("... uses reserved fields").
func TestReservedFields(t *testing.T) {
	progs := map[string]string{
		"add64 imm with off": "07 00 01 00 01 00 00 00 95 00 00 00 00 00 00 00",
		"add64 imm with src": "07 10 00 00 01 00 00 00 95 00 00 00 00 00 00 00",
		"add64 reg with imm": "0f 00 00 00 01 00 00 00 95 00 00 00 00 00 00 00",
		"mov64 reg with off": "bf 10 01 00 00 00 00 00 95 00 00 00 00 00 00 00",
		"exit with dst":      "b7 00 00 00 00 00 00 00 95 01 00 00 00 00 00 00",
		"exit with imm":      "b7 00 00 00 00 00 00 00 95 00 00 00 01 00 00 00",
		"ja with dst":        "b7 00 00 00 00 00 00 00 05 01 00 00 00 00 00 00 95 00 00 00 00 00 00 00",
		"ja with imm":        "b7 00 00 00 00 00 00 00 05 00 00 00 01 00 00 00 95 00 00 00 00 00 00 00",
		"neg with imm":       "b7 00 00 00 00 00 00 00 87 00 00 00 01 00 00 00 95 00 00 00 00 00 00 00",
		"be16 with src":      "b7 00 00 00 00 00 00 00 dc 10 00 00 10 00 00 00 95 00 00 00 00 00 00 00",
		"ldxdw with imm":     "7b 1a f8 ff 00 00 00 00 79 a0 f8 ff 01 00 00 00 95 00 00 00 00 00 00 00",
		"stw with src":       "62 1a fc ff 01 00 00 00 61 a0 fc ff 00 00 00 00 95 00 00 00 00 00 00 00",
		"call with dst":      "85 01 00 00 05 00 00 00 95 00 00 00 00 00 00 00",
		"jeq imm with src":   "b7 00 00 00 00 00 00 00 15 10 00 00 00 00 00 00 95 00 00 00 00 00 00 00",
		"jeq reg with imm":   "b7 00 00 00 00 00 00 00 1d 00 00 00 01 00 00 00 95 00 00 00 00 00 00 00",
	}
	for name, hex := range progs {
		wantStopped(t, name, invokeRaw(t, hex+"\n"))
	}
}

// TestELF runs an object compiled by clang -target bpf, given as the runner's --elf gives it.
func TestELF(t *testing.T) {
	clang, err := exec.LookPath("clang")
	if err != nil {
		t.Skip("clang not installed")
	}
	obj := filepath.Join(t.TempDir(), "fnv.o")
	if out, err := exec.Command(clang, "-O2", "-target", "bpf", "-mcpu=v3", "-c", "../../scripts/demo/fnv.c", "-o", obj).CombinedOutput(); err != nil {
		t.Fatalf("clang: %v\n%s", err, out)
	}
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	input := []byte("Hello from ebpfu")
	h := uint64(0xcbf29ce484222325)
	for _, c := range input {
		h = (h ^ uint64(c)) * 0x100000001b3
	}
	r := invokeRaw(t, conformance.FormatHex(b)+"\n", conformance.FormatHex(input), "--elf")
	if r.code != 0 || r.stdout != strconv.FormatUint(h, 16)+"\n" {
		t.Errorf("--elf: %+v, want %x", r, h)
	}
	wantStopped(t, "--elf with a program that is not ELF", invoke(t, asm(t, "mov %r0, 0\nexit"), nil, "--elf"))
}
