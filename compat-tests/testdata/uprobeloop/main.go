// Command uprobeloop attaches a counting uprobe program to a function of a running workload and
// detaches it, again and again, with cilium/ebpf (perf_event_open of the uprobe PMU, then a perf
// link): `uprobeloop BINARY SYMBOL ROUNDS`. Each round waits for a hit before it detaches; it
// prints how many rounds counted one. Built static (CGO_ENABLED=0), it is served by seccomp alone.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: uprobeloop BINARY SYMBOL ROUNDS")
		os.Exit(2)
	}
	rounds, err := strconv.Atoi(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], rounds); err != nil {
		fmt.Fprintln(os.Stderr, "uprobeloop:", err)
		os.Exit(1)
	}
}

func run(path, sym string, rounds int) error {
	counts, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return fmt.Errorf("map: %w", err)
	}
	defer counts.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.Kprobe,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, counts.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("program: %w", err)
	}
	defer prog.Close()
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return err
	}
	var last uint64
	counted := 0
	for i := range rounds {
		l, err := ex.Uprobe(sym, prog, nil)
		if err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		// the workload's threads call the function in a loop: wait for a hit (2 s at most)
		var n uint64
		for start := time.Now(); time.Since(start) < 2*time.Second; time.Sleep(time.Millisecond) {
			if err := counts.Lookup(uint32(0), &n); err != nil {
				return err
			}
			if n > last {
				counted++
				break
			}
		}
		if err := l.Close(); err != nil {
			return fmt.Errorf("round %d: closing the link: %w", i, err)
		}
		if err := counts.Lookup(uint32(0), &last); err != nil {
			return err
		}
	}
	fmt.Printf("%d of %d rounds counted hits\n", counted, rounds)
	return nil
}
