// Command ciliumprog is a small loader built on cilium/ebpf, as static Go loaders are
// (CGO_ENABLED=0: no libc, so nothing but seccomp can serve its bpf(2)). The compat tests run it
// as root against the kernel and as an ordinary user under ebpfu-shim and compare what it prints.
//
// It creates a hash and an array map, fills them, iterates them (MapIterator), reads their info,
// loads a socket filter that counts its runs in the array and records skb->len in the hash,
// test-runs it (Program.Run, repeated), reads the maps and the program's info again, and loads
// bad programs to print the verifier's errors. Ids are printed as "id N" so the test can
// normalise them.
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"
)

func main() {
	if err := run(); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

func run() error {
	hash, err := ebpf.NewMap(&ebpf.MapSpec{Name: "lens", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 64})
	if err != nil {
		return fmt.Errorf("hash map: %w", err)
	}
	defer hash.Close()
	array, err := ebpf.NewMap(&ebpf.MapSpec{Name: "runs", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	if err != nil {
		return fmt.Errorf("array map: %w", err)
	}
	defer array.Close()

	for k := uint32(1); k <= 5; k++ {
		if err := hash.Put(k*10, uint64(k*k)); err != nil {
			return fmt.Errorf("put %d: %w", k, err)
		}
	}
	if err := array.Put(uint32(2), uint64(100)); err != nil {
		return fmt.Errorf("array put: %w", err)
	}
	err = hash.Update(uint32(10), uint64(1), ebpf.UpdateNoExist)
	fmt.Printf("update noexist of a present key: %v\n", errors.Is(err, ebpf.ErrKeyExist))
	var v uint64
	err = hash.Lookup(uint32(99), &v)
	fmt.Printf("lookup of an absent key: %v\n", errors.Is(err, ebpf.ErrKeyNotExist))
	if err := hash.Delete(uint32(50)); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	err = array.Delete(uint32(1))
	fmt.Printf("array delete: %v\n", err)
	if err := dump("hash", hash); err != nil {
		return err
	}
	if err := dump("array", array); err != nil {
		return err
	}
	for _, m := range []*ebpf.Map{hash, array} {
		if err := mapInfo(m); err != nil {
			return err
		}
	}

	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "count_len",
		Type:         ebpf.SocketFilter,
		License:      "GPL",
		Instructions: countProgram(array, hash),
	})
	if err != nil {
		return fmt.Errorf("loading the program: %w", err)
	}
	defer prog.Close()
	pkt := make([]byte, 64)
	for i := range pkt {
		pkt[i] = byte(i * 3)
	}
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, Repeat: 7})
	if err != nil {
		return fmt.Errorf("running the program: %w", err)
	}
	fmt.Printf("run: retval %d\n", ret)
	out := make([]byte, len(pkt))
	ret, err = prog.Run(&ebpf.RunOptions{Data: pkt[:40], DataOut: out})
	if err != nil {
		return fmt.Errorf("running the program: %w", err)
	}
	fmt.Printf("run with data out: retval %d out % x\n", ret, out[:40])
	if err := dump("hash", hash); err != nil {
		return err
	}
	if err := dump("array", array); err != nil {
		return err
	}
	if err := progInfo(prog); err != nil {
		return err
	}
	// A second handle on the same objects, by id, as tools that list objects get them.
	pi, _ := prog.Info()
	if id, ok := pi.ID(); ok {
		again, err := ebpf.NewProgramFromID(id)
		if err != nil {
			return fmt.Errorf("program from id: %w", err)
		}
		ai, _ := again.Info()
		fmt.Printf("by id: %s %s\n", ai.Name, ai.Type)
		again.Close()
	}
	mi, _ := hash.Info()
	if id, ok := mi.ID(); ok {
		again, err := ebpf.NewMapFromID(id)
		if err != nil {
			return fmt.Errorf("map from id: %w", err)
		}
		var n uint64
		if err := again.Lookup(uint32(20), &n); err != nil {
			return fmt.Errorf("lookup by id: %w", err)
		}
		fmt.Printf("by id: %s[20] = %d\n", mi.Name, n)
		again.Close()
	}

	if err := batches(); err != nil {
		return err
	}
	if err := ringbufReader(); err != nil {
		return err
	}

	for _, bad := range []struct {
		name  string
		insns asm.Instructions
	}{
		{"uninit", asm.Instructions{asm.Mov.Reg(asm.R0, asm.R3), asm.Return()}},
		{"nullcheck", asm.Instructions{
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, array.FD()),
			asm.FnMapLookupElem.Call(),
			asm.LoadMem(asm.R0, asm.R0, 0, asm.DWord),
			asm.Return(),
		}},
		{"nullcheck-hash", asm.Instructions{
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, hash.FD()),
			asm.FnMapLookupElem.Call(),
			asm.LoadMem(asm.R0, asm.R0, 0, asm.DWord),
			asm.Return(),
		}},
		{"stack", asm.Instructions{asm.LoadMem(asm.R0, asm.RFP, 8, asm.DWord), asm.Return()}},
		{"noexit", asm.Instructions{asm.Mov.Imm(asm.R0, 0)}},
	} {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: bad.name, Type: ebpf.SocketFilter, License: "GPL", Instructions: bad.insns})
		if err == nil {
			p.Close()
			fmt.Printf("bad program %s: loaded\n", bad.name)
			continue
		}
		var ve *ebpf.VerifierError
		fmt.Printf("bad program %s: verifier error %v: %v\n", bad.name, errors.As(err, &ve), err)
	}
	return nil
}

// countProgram returns a socket filter that adds 1 to runs[0], sets lens[skb->len] to the
// number of runs so far, and returns skb->len.
func countProgram(runs, lens *ebpf.Map) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, runs.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, 0, asm.Word), // skb->len
		asm.StoreMem(asm.RFP, -8, asm.R1, asm.Word),
		asm.StoreMem(asm.RFP, -16, asm.R7, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -16),
		asm.Mov.Imm(asm.R4, 0),
		asm.LoadMapPtr(asm.R1, lens.FD()),
		asm.FnMapUpdateElem.Call(),
		asm.LoadMem(asm.R0, asm.R6, 0, asm.Word).WithSymbol("out"),
		asm.Return(),
	}
}

// dump prints a map's contents in key order, read with a MapIterator.
func dump(what string, m *ebpf.Map) error {
	type kv struct {
		k uint32
		v uint64
	}
	var all []kv
	var k uint32
	var v uint64
	it := m.Iterate()
	for it.Next(&k, &v) {
		all = append(all, kv{k, v})
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterating %s: %w", what, err)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].k < all[j].k })
	fmt.Printf("%s:", what)
	for _, e := range all {
		fmt.Printf(" %d=%d", e.k, e.v)
	}
	fmt.Println()
	return nil
}

func mapInfo(m *ebpf.Map) error {
	info, err := m.Info()
	if err != nil {
		return fmt.Errorf("map info: %w", err)
	}
	id, ok := info.ID()
	fmt.Printf("map %q id %d (%v): %s key %d value %d max %d flags %#x\n",
		info.Name, id, ok, info.Type, info.KeySize, info.ValueSize, info.MaxEntries, info.Flags)
	return nil
}

func progInfo(p *ebpf.Program) error {
	info, err := p.Info()
	if err != nil {
		return fmt.Errorf("program info: %w", err)
	}
	id, ok := info.ID()
	mapIDs, _ := info.MapIDs()
	fmt.Printf("program %q id %d (%v): %s tag %s maps %d\n", info.Name, id, ok, info.Type, info.Tag, len(mapIDs))
	return nil
}

// batches fills, reads in chunks and empties maps with the batch commands.
func batches() error {
	hash, err := ebpf.NewMap(&ebpf.MapSpec{Name: "batch", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 32})
	if err != nil {
		return fmt.Errorf("batch hash: %w", err)
	}
	defer hash.Close()
	keys := []uint32{3, 1, 4, 15, 9, 2, 6}
	values := []uint64{30, 10, 40, 150, 90, 20, 60}
	n, err := hash.BatchUpdate(keys, values, nil)
	fmt.Printf("batch update: %d %v\n", n, err)
	got := map[uint32]uint64{}
	var cursor ebpf.MapBatchCursor
	for {
		ks, vs := make([]uint32, 3), make([]uint64, 3)
		n, err := hash.BatchLookup(&cursor, ks, vs, nil)
		for i := range n {
			got[ks[i]] = vs[i]
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("batch lookup: %w", err)
		}
	}
	fmt.Printf("batch lookup: %d entries, %v\n", len(got), sortedKV(got))
	n, err = hash.BatchDelete([]uint32{1, 2, 3}, nil)
	fmt.Printf("batch delete: %d %v\n", n, err)
	n, err = hash.BatchDelete([]uint32{4, 99, 6}, nil)
	fmt.Printf("batch delete of an absent key: %d %v\n", n, errors.Is(err, ebpf.ErrKeyNotExist))
	clear(got)
	var cursor2 ebpf.MapBatchCursor
	for {
		ks, vs := make([]uint32, 8), make([]uint64, 8)
		n, err := hash.BatchLookupAndDelete(&cursor2, ks, vs, nil)
		for i := range n {
			got[ks[i]] = vs[i]
		}
		if err != nil {
			fmt.Printf("batch lookup and delete: end %v\n", errors.Is(err, ebpf.ErrKeyNotExist))
			break
		}
	}
	fmt.Printf("batch lookup and delete: %v\n", sortedKV(got))
	var k uint32
	var v uint64
	fmt.Printf("hash empty: %v\n", !hash.Iterate().Next(&k, &v))

	array, err := ebpf.NewMap(&ebpf.MapSpec{Name: "batcharr", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 5})
	if err != nil {
		return fmt.Errorf("batch array: %w", err)
	}
	defer array.Close()
	n, err = array.BatchUpdate([]uint32{0, 4, 7}, []uint64{5, 6, 7}, nil)
	fmt.Printf("array batch update: %d %v\n", n, err)
	var ac ebpf.MapBatchCursor
	ks, vs := make([]uint32, 4), make([]uint64, 4)
	n, err = array.BatchLookup(&ac, ks, vs, nil)
	fmt.Printf("array batch lookup: %d %v %v %v\n", n, err, ks[:n], vs[:n])
	n, err = array.BatchLookup(&ac, ks, vs, nil)
	fmt.Printf("array batch lookup: %d %v %v %v\n", n, errors.Is(err, ebpf.ErrKeyNotExist), ks[:n], vs[:n])
	_, err = array.BatchDelete([]uint32{0}, nil)
	fmt.Printf("array batch delete: %v\n", err)
	return nil
}

func sortedKV(m map[uint32]uint64) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%d=%d", k, v))
	}
	sort.Strings(out)
	return out
}

// ringbufReader runs a program that writes skb->len into a BPF ring buffer and reads the records with
// cilium/ebpf's reader, which waits for them in epoll on the map's fd.
func ringbufReader() error {
	rb, err := ebpf.NewMap(&ebpf.MapSpec{Name: "events", Type: ebpf.RingBuf, MaxEntries: 4096})
	if err != nil {
		return fmt.Errorf("ringbuf: %w", err)
	}
	defer rb.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "emit", Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // skb->len
			asm.StoreMem(asm.RFP, -8, asm.R2, asm.DWord),
			asm.LoadMapPtr(asm.R1, rb.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.Mov.Imm(asm.R3, 8),
			asm.Mov.Imm(asm.R4, 0),
			asm.FnRingbufOutput.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("ringbuf program: %w", err)
	}
	defer prog.Close()
	rd, err := ringbuf.NewReader(rb)
	if err != nil {
		return fmt.Errorf("ringbuf reader: %w", err)
	}
	defer rd.Close()
	run := func(size int) {
		if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, size)}); err != nil {
			fmt.Println("run:", err)
		}
	}
	run(20)
	run(30)
	for range 2 {
		rec, err := rd.Read()
		if err != nil {
			return fmt.Errorf("ringbuf read: %w", err)
		}
		fmt.Printf("ringbuf record: % x\n", rec.RawSample)
	}
	// A reader waiting in epoll wakes when a record arrives.
	go func() {
		time.Sleep(200 * time.Millisecond)
		run(45)
	}()
	rec, err := rd.Read()
	if err != nil {
		return fmt.Errorf("ringbuf read: %w", err)
	}
	fmt.Printf("ringbuf record after waiting: % x\n", rec.RawSample)
	rd.SetDeadline(time.Now().Add(100 * time.Millisecond))
	_, err = rd.Read()
	fmt.Printf("ringbuf read with nothing to read: %v\n", errors.Is(err, os.ErrDeadlineExceeded))
	return nil
}
