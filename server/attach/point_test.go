package attach

import (
	"debug/elf"
	"os"
	"strings"
	"testing"
)

// entryOffset returns the file offset of the entry point of the ELF file at path.
func entryOffset(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && f.Entry >= p.Vaddr && f.Entry < p.Vaddr+p.Filesz {
			return f.Entry - p.Vaddr + p.Off
		}
	}
	t.Fatalf("%s: no segment holds the entry point", path)
	return 0
}

// TestResolveUntraced: a probe in a program no process of which can run the agent (set-user-ID:
// the loader ignores LD_PRELOAD) is refused with the reason; the dynamic loader itself, a shared
// object without an interpreter, is not.
func TestResolveUntraced(t *testing.T) {
	const setuid = "/usr/bin/passwd"
	if st, err := os.Stat(setuid); err != nil || st.Mode()&os.ModeSetuid == 0 {
		t.Skipf("%s is not a set-user-ID program here", setuid)
	}
	_, err := Resolve(setuid, entryOffset(t, setuid))
	if err == nil || !strings.Contains(err.Error(), "a set-user-ID or set-group-ID program: no process of it runs the agent") {
		t.Errorf("Resolve(%s): %v, want the set-user-ID refusal", setuid, err)
	}
	const loader = "/lib64/ld-linux-x86-64.so.2"
	if _, err := Resolve(loader, entryOffset(t, loader)); err != nil && strings.Contains(err.Error(), "no process of it") {
		t.Errorf("Resolve(%s): %v", loader, err)
	}
}
