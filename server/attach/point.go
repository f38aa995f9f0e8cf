package attach

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Point is a probe point: a place in an executable file, resolved and checked for patching.
type Point struct {
	// Path is the file as the tool named it; Dev and Ino identify it in processes' mappings.
	Path         string
	Major, Minor uint32
	Ino          uint64
	// Offset is the probe point's file offset (perf_event_attr.config2 of a uprobe).
	Offset uint64
	// Symbol is the function holding the point ("" when no symbol covers it); FuncEntry says
	// the point is its first instruction.
	Symbol    string
	FuncEntry bool
	// Int3 says the point is probed with a breakpoint, a one-byte int3 the agent's SIGTRAP
	// handler answers, because a jump does not fit there: Displaced then holds the point's
	// first instruction only, which runs out of line after the programs.
	Int3      bool
	Displaced *Displaced
}

// Resolve checks that the code at file offset off of the executable at path can be patched
// with a jump and computes the relocation of what the jump displaces. A refusal is a one-line
// reason. The function holding the point (from the ELF symbol tables) bounds the displaced
// bytes, and no branch of it may jump into them; without a symbol neither can be checked. Where
// the jump does not fit for either of these reasons (a function that ends too soon after the
// point, a branch into the bytes it would displace), the point is probed with int3 (Point.Int3),
// as the kernel probes every point.
func Resolve(path string, off uint64) (*Point, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: not an ELF file: %w", path, err)
	}
	defer ef.Close()
	if ef.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%s: %v code: only x86-64 can be probed", path, ef.Machine)
	}
	if why := untraced(ef, st.Mode); why != "" {
		return nil, fmt.Errorf("%s: %s: no process of it runs the agent, its probes would never fire", path, why)
	}
	var seg *elf.Prog
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && off >= p.Off && off < p.Off+p.Filesz {
			seg = p
			break
		}
	}
	if seg == nil {
		return nil, fmt.Errorf("%s: offset %#x is not in an executable segment", path, off)
	}
	vaddr := off - seg.Off + seg.Vaddr
	pt := &Point{Path: path, Major: unix.Major(st.Dev), Minor: unix.Minor(st.Dev), Ino: st.Ino, Offset: off}

	// the function holding the point
	start, end := off, seg.Off+seg.Filesz
	if sym, ok := funcAt(ef, vaddr); ok {
		pt.Symbol = sym.Name
		start = sym.Value - seg.Vaddr + seg.Off
		end = start + sym.Size
		pt.FuncEntry = start == off
	}
	body := make([]byte, end-start)
	if _, err := f.ReadAt(body, int64(start)); err != nil {
		return nil, fmt.Errorf("%s: reading the code at %#x: %w", path, start, err)
	}
	rel := off - start
	if pt.Symbol != "" && !boundaries(body)[int(rel)] {
		return nil, fmt.Errorf("%s: offset %#x is not an instruction boundary of %s", path, off, pt.Symbol)
	}
	d, err := Relocate(body[rel:], padding(f, ef, seg, start+uint64(len(body))))
	if errors.Is(err, errTooShort) ||
		err == nil && pt.Symbol != "" && branchInto(body, int64(start), int64(off), int64(len(d.Orig))) {
		// a jump does not fit (the function ends too soon, or one of its branches lands in the
		// bytes the jump would replace): int3 replaces one byte of the first instruction
		pt.Int3 = true
		d, err = RelocateFirst(body[rel:])
	}
	if err != nil {
		where := pt.Symbol
		if where == "" {
			where = fmt.Sprintf("%#x", off)
		}
		return nil, fmt.Errorf("cannot probe %s in %s: %w", where, path, err)
	}
	pt.Displaced = d
	return pt, nil
}

// branchInto reports whether a relative branch of the function body (at file offset base) jumps
// into the n bytes at file offset at, other than to at itself.
func branchInto(body []byte, base, at, n int64) bool {
	for _, t := range branchTargets(body, base) {
		if t > at && t < at+n {
			return true
		}
	}
	return false
}

// untraced says why no process of the ELF file ef (of mode mode) can run the agent, which the
// dynamic loader preloads: a statically linked program has no loader, and the loader of a
// set-user-ID or set-group-ID program ignores LD_PRELOAD's agent. "" when processes may.
func untraced(ef *elf.File, mode uint32) string {
	interp := false
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			interp = true
		}
	}
	if !interp && ef.Type == elf.ET_EXEC {
		return "a statically linked program"
	}
	if !interp && ef.Type == elf.ET_DYN {
		if f, err := ef.DynValue(elf.DT_FLAGS_1); err == nil && len(f) > 0 && f[0]&uint64(elf.DF_1_PIE) != 0 {
			return "a statically linked program"
		}
	}
	if interp && mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		return "a set-user-ID or set-group-ID program"
	}
	return ""
}

// maxPadding bounds the filler read after a function: linkers align functions to 16 bytes, and
// a nop that covers the bytes a jump needs may be longer than them.
const maxPadding = 32

// padding returns the bytes after a function's end at file offset end that are in its segment
// and that no function symbol covers (at most maxPadding); nil when there are none.
func padding(f *os.File, ef *elf.File, seg *elf.Prog, end uint64) []byte {
	n := min(uint64(maxPadding), seg.Off+seg.Filesz-min(end, seg.Off+seg.Filesz))
	if next, ok := nextFunc(ef, end-seg.Off+seg.Vaddr); ok && next-(end-seg.Off+seg.Vaddr) < n {
		n = next - (end - seg.Off + seg.Vaddr)
	}
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, int64(end)); err != nil {
		return nil
	}
	return b
}

// nextFunc returns the lowest address at or after vaddr that a function symbol covers.
func nextFunc(ef *elf.File, vaddr uint64) (uint64, bool) {
	var next uint64
	found := false
	for _, get := range []func() ([]elf.Symbol, error){ef.Symbols, ef.DynamicSymbols} {
		syms, err := get()
		if err != nil {
			continue
		}
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF || s.Size == 0 || s.Value+s.Size <= vaddr {
				continue
			}
			a := max(s.Value, vaddr)
			if !found || a < next {
				next, found = a, true
			}
		}
	}
	return next, found
}

// funcAt finds the function symbol covering vaddr in the static or dynamic symbol table.
func funcAt(ef *elf.File, vaddr uint64) (elf.Symbol, bool) {
	for _, get := range []func() ([]elf.Symbol, error){ef.Symbols, ef.DynamicSymbols} {
		syms, err := get()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			continue
		}
		var best elf.Symbol
		found := false
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF || s.Size == 0 {
				continue
			}
			if vaddr >= s.Value && vaddr < s.Value+s.Size && (!found || s.Value > best.Value) {
				best, found = s, true
			}
		}
		if found {
			return best, true
		}
	}
	return elf.Symbol{}, false
}
