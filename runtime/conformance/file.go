// Package conformance reads the test files of the public bpf_conformance project (the .data
// format) and assembles and disassembles their assembler text, the uBPF dialect
// (`mov32 %r0, 0`, `ldxh %r3, [%r1+12]`, `lock fetch add [%r10-8], %r1`, `call local f`, ...).
//
// The files are data: tests read them in place from ../shared/conformance/tests.
package conformance

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ebpfu/ebpfu/runtime/isa"
)

// Test is one parsed .data file.
type Test struct {
	// Name is the file's base name without the .data suffix.
	Name string
	// Asm is the text of the "-- asm" section, comments removed.
	Asm string
	// Insns is the program: the "-- raw" section when the file has one (as the upstream runner
	// does), else the assembled "-- asm" section.
	Insns []isa.Instruction
	// Raw is the "-- raw" section, nil when absent.
	Raw []isa.Instruction
	// Mem is the input memory ("-- mem"), nil when absent.
	Mem []byte
	// Result is the expected r0 ("-- result"); HasResult says whether the file gives one.
	Result    uint64
	HasResult bool
	// Error is the expected error text ("-- error"); a test with an Error must be refused or fault.
	Error string
}

// section is the part of a file a line belongs to.
type section int

const (
	secIgnore section = iota
	secAsm
	secRaw
	secResult
	secMem
	secError
)

// ParseFile reads and parses one .data file.
func ParseFile(path string) (*Test, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := Parse(strings.TrimSuffix(filepath.Base(path), ".data"), b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse parses the contents of a .data file. It follows the upstream runner: `#` starts a comment
// anywhere on a line, a line holding "--" starts a section, and "-- raw" wins over "-- asm".
func Parse(name string, data []byte) (*Test, error) {
	t := &Test{Name: name}
	var asm, raw, mem, result strings.Builder
	haveAsm, haveRaw, haveMem := false, false, false
	sec := secIgnore
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if i := strings.Index(line, "--"); i >= 0 {
			dir := strings.TrimSpace(line[i+2:])
			switch {
			case dir == "asm":
				sec, haveAsm = secAsm, true
			case dir == "raw":
				sec, haveRaw = secRaw, true
			case dir == "result":
				sec = secResult
			case dir == "mem":
				sec, haveMem = secMem, true
			case dir == "error":
				sec = secError
			case dir == "c" || dir == "no register offset":
				sec = secIgnore
			default:
				return nil, fmt.Errorf("unknown directive %q", strings.TrimSpace(line))
			}
			continue
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		switch sec {
		case secAsm:
			asm.WriteString(line)
			asm.WriteByte('\n')
		case secRaw:
			raw.WriteString(line)
			raw.WriteByte(' ')
		case secResult:
			result.Reset()
			result.WriteString(strings.TrimSpace(line))
		case secMem:
			mem.WriteString(line)
			mem.WriteByte(' ')
		case secError:
			t.Error = strings.TrimSpace(line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}

	if s := result.String(); s != "" {
		v, err := parseResult(s)
		if err != nil {
			return nil, err
		}
		t.Result, t.HasResult = v, true
	}
	if !t.HasResult && t.Error == "" {
		return nil, fmt.Errorf("no result or error")
	}
	if haveMem {
		m, err := ParseHex(mem.String())
		if err != nil {
			return nil, fmt.Errorf("mem: %w", err)
		}
		t.Mem = m
	}
	if haveAsm {
		t.Asm = asm.String()
		insns, err := Assemble(t.Asm)
		if err != nil {
			return nil, fmt.Errorf("asm: %w", err)
		}
		t.Insns = insns
	}
	if haveRaw {
		r, err := parseRaw(raw.String())
		if err != nil {
			return nil, fmt.Errorf("raw: %w", err)
		}
		t.Raw, t.Insns = r, r
	}
	if len(t.Insns) == 0 {
		return nil, fmt.Errorf("no instructions")
	}
	return t, nil
}

// parseResult reads a result the way the runner does: hex when it holds "0x", else decimal.
func parseResult(s string) (uint64, error) {
	var (
		v   uint64
		err error
	)
	if i := strings.Index(s, "0x"); i >= 0 {
		v, err = strconv.ParseUint(s[i+2:], 16, 64)
	} else {
		v, err = strconv.ParseUint(s, 10, 64)
	}
	if err != nil {
		return 0, fmt.Errorf("result %q: %w", s, err)
	}
	return v, nil
}

// parseRaw reads "-- raw" words: each a 64-bit instruction slot as a number (hex with 0x), whose
// little-endian encoding is the slot's bytes.
func parseRaw(s string) ([]isa.Instruction, error) {
	var out []isa.Instruction
	for _, f := range strings.Fields(s) {
		v, err := strconv.ParseUint(f, 0, 64)
		if err != nil {
			return nil, fmt.Errorf("word %q: %w", f, err)
		}
		out = append(out, isa.Instruction{
			Op:   uint8(v),
			Regs: uint8(v >> 8),
			Off:  int16(uint16(v >> 16)),
			Imm:  int32(uint32(v >> 32)),
		})
	}
	return out, nil
}

// ParseHex reads bytes written as hex: pairs of digits, separated by any white space or none
// ("b7 00 00", "b7  00  00", "b70000"). An optional 0x before a pair is accepted.
func ParseHex(s string) ([]byte, error) {
	out := make([]byte, 0, len(s)/3+1)
	for _, f := range strings.Fields(s) {
		f = strings.TrimPrefix(strings.TrimPrefix(f, "0x"), "0X")
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("hex %q: odd number of digits", f)
		}
		for i := 0; i < len(f); i += 2 {
			hi, ok1 := hexDigit(f[i])
			lo, ok2 := hexDigit(f[i+1])
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("hex %q: not a hex digit", f[i:i+2])
			}
			out = append(out, hi<<4|lo)
		}
	}
	return out, nil
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// FormatHex writes b as the plugin protocol does: two lowercase digits per byte, each followed
// by two spaces.
func FormatHex(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, len(b)*4)
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15], ' ', ' ')
	}
	return string(out)
}

// LoadDir parses every .data file of dir, sorted by name.
func LoadDir(dir string) ([]*Test, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.data"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	tests := make([]*Test, 0, len(paths))
	for _, p := range paths {
		t, err := ParseFile(p)
		if err != nil {
			return nil, err
		}
		tests = append(tests, t)
	}
	return tests, nil
}
