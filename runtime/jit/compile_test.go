package jit_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/jit"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// TestCompileDeterministic holds compilation to a function of the program alone: the compiler
// keeps scratch memory between compilations, and nothing of one may show in the next, whether
// they follow each other or run at once.
func TestCompileDeterministic(t *testing.T) {
	progs := []*program.Program{program1000()}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 200 {
		data := make([]byte, 64+rng.IntN(2000))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		progs = append(progs, genProgram(data))
	}
	want := make([]*jit.Code, len(progs))
	for i, p := range progs {
		c, err := jit.Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = c
	}
	same := func(i int, c *jit.Code) bool {
		return bytes.Equal(c.Text, want[i].Text) && slices.Equal(c.Insns, want[i].Insns) &&
			slices.Equal(c.ValueRefs, want[i].ValueRefs)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 3 * len(progs) {
				i := (k*7 + g*13) % len(progs)
				c, err := jit.Compile(progs[i])
				if err != nil || !same(i, c) {
					t.Errorf("program %d compiled differently (%v)", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
