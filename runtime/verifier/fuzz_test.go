package verifier

import (
	"math/rand"
	"syscall"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// fuzzMaps resolves the map fds fuzzed programs name: 1 a hash, 2 an array, 3 a ringbuf, 4 a
// frozen read-only array of global constants.
func fuzzMaps(src uint8, ref int32) (program.MapInfo, error) {
	switch ref {
	case 1:
		return program.MapInfo{ID: 1, Type: mapTypeHash, KeySize: 8, ValueSize: 16, MaxEntries: 64}, nil
	case 2:
		return program.MapInfo{ID: 2, Type: mapTypeArray, KeySize: 4, ValueSize: 32, MaxEntries: 1}, nil
	case 3:
		return program.MapInfo{ID: 3, Type: mapTypeRingbuf, MaxEntries: 4096}, nil
	case 4:
		return program.MapInfo{ID: 4, Type: mapTypeArray, KeySize: 4, ValueSize: 16, MaxEntries: 1,
			Flags: mapFlagRdonlyProg, Frozen: []byte("hello\x00world\x00\x01\x02\x03\x04")}, nil
	}
	return program.MapInfo{}, refuse(syscall.EBADF, "fd %d is not pointing to valid bpf_map", ref)
}

// FuzzVerify feeds arbitrary instruction streams to the verifier for a plain buffer and for a
// kprobe: it must answer every one, never panic, and every accepted program must be well formed.
func FuzzVerify(f *testing.F) {
	if dir, ok := conformance.FindDir(); ok {
		if tests, err := conformance.LoadDir(dir); err == nil {
			for i, c := range tests {
				if i%4 == 0 {
					f.Add(isa.Encode(c.Insns), uint8(len(c.Mem)))
				}
			}
		}
	}
	g := &gen{r: rand.New(rand.NewSource(7)), mutate: 0.1, array: 2, hash: 1}
	for i := 0; i < 20; i++ {
		f.Add(isa.Encode(g.program()), uint8(0))
	}
	f.Fuzz(func(t *testing.T, code []byte, ctx uint8) {
		insns, err := isa.Decode(code[:len(code)/8*8])
		if err != nil || len(insns) > 4096 {
			return
		}
		for _, typ := range []program.Type{program.Raw, program.Kprobe} {
			opts := &Options{Type: typ, CtxSize: int(ctx), CtxWritable: true, Maps: fuzzMaps, GPL: true,
				Helpers: allHelpersNoT(), MaxInsns: 200_000, PossibleCPUs: 2}
			p, err := Verify(insns, opts)
			if err != nil {
				if _, ok := err.(*Error); !ok {
					t.Fatalf("refusal is not a *verifier.Error: %v", err)
				}
				continue
			}
			if len(p.Checks) != len(p.Insns) || len(p.Funcs) == 0 || p.Funcs[0].Start != 0 {
				t.Fatalf("malformed program: %d checks for %d insns, funcs %v", len(p.Checks), len(p.Insns), p.Funcs)
			}
		}
	})
}
