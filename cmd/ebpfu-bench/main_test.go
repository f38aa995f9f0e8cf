package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/isa"
)

// writeBench writes a program summing its input bytes, the input and a native results file.
func writeBench(t *testing.T, nativeResult string) (bin, input, native string) {
	t.Helper()
	dir := t.TempDir()
	insns, err := conformance.Assemble(`
mov %r0, 0
l:
jeq %r2, 0, done
ldxb %r3, [%r1]
add %r0, %r3
add %r1, 1
sub %r2, 1
ja l
done:
exit`)
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "sum.bin")
	input = filepath.Join(dir, "input")
	native = filepath.Join(dir, "native.txt")
	for path, data := range map[string]string{
		bin:    string(isa.Encode(insns)),
		input:  "\x01\x02\x03\x04",
		native: "sum " + nativeResult + " 10.0\n",
	} {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return bin, input, native
}

func TestTable(t *testing.T) {
	bin, input, native := writeBench(t, "a")
	var out strings.Builder
	if err := run([]string{"-input", input, "-native", native, "-exec", "interp", "-time", "20ms", bin}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"program", "native ns", "interp ratio", "sum", "geometric mean"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "MISMATCH") {
		t.Errorf("unexpected mismatch:\n%s", out.String())
	}
}

func TestMismatch(t *testing.T) {
	bin, input, native := writeBench(t, "b") // the sum is 0xa
	var out strings.Builder
	err := run([]string{"-input", input, "-native", native, "-exec", "interp", "-time", "20ms", bin}, &out)
	if err == nil || !strings.Contains(out.String(), "MISMATCH") {
		t.Errorf("a wrong result went unreported: %v\n%s", err, out.String())
	}
}
