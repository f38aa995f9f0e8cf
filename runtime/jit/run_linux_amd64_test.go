package jit

import (
	"os"
	"regexp"
	"strconv"
	"testing"
	"unsafe"
)

// TestRunBlockLayout holds runBlock to the offsets trampoline_amd64.s defines.
func TestRunBlockLayout(t *testing.T) {
	src, err := os.ReadFile("trampoline_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	defs := map[string]uintptr{}
	for _, m := range regexp.MustCompile(`(?m)^#define (\w+) (0x[0-9a-f]+)$`).FindAllStringSubmatch(string(src), -1) {
		v, err := strconv.ParseUint(m[2], 0, 64)
		if err != nil {
			t.Fatal(err)
		}
		defs[m[1]] = uintptr(v)
	}
	var b runBlock
	want := map[string]uintptr{
		"GO_SP": unsafe.Offsetof(b.goSP), "GO_BP": unsafe.Offsetof(b.goBP), "GO_BX": unsafe.Offsetof(b.goBX),
		"GO_R12": unsafe.Offsetof(b.goR12), "GO_R13": unsafe.Offsetof(b.goR13),
		"GO_R14": unsafe.Offsetof(b.goR14), "GO_R15": unsafe.Offsetof(b.goR15),
		"JIT_SP": unsafe.Offsetof(b.jitSP), "JIT_BX": unsafe.Offsetof(b.jitBX), "JIT_BP": unsafe.Offsetof(b.jitBP),
		"JIT_R12": unsafe.Offsetof(b.jitR12), "JIT_R13": unsafe.Offsetof(b.jitR13),
		"JIT_R14": unsafe.Offsetof(b.jitR14), "JIT_R15": unsafe.Offsetof(b.jitR15),
		"STACK_TOP": unsafe.Offsetof(b.stackTop), "HELPER_ID": unsafe.Offsetof(b.helperID),
		"HELPER_ARGS": unsafe.Offsetof(b.helperArgs), "ARGS": unsafe.Offsetof(b.args),
		"RESULT": unsafe.Offsetof(b.result),
	}
	for name, off := range want {
		got, ok := defs[name]
		if !ok {
			t.Errorf("trampoline_amd64.s does not define %s", name)
		} else if got != off {
			t.Errorf("%s is %#x in trampoline_amd64.s, %#x in runBlock", name, got, off)
		}
	}
	if len(defs) != len(want) {
		t.Errorf("trampoline_amd64.s defines %d offsets, the test knows %d", len(defs), len(want))
	}
}
