package server

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/maps"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/runtime/verifier"
	"golang.org/x/sys/unix"
)

// A program's file (its home, which its live entry and pins link to) holds the program as
// loaded, with its map references turned into indexes into its list of map ids; the maps and BTF
// it uses are kept alive by holder links (live.go). Another shim opens the program, by id or by
// pin, by verifying it again on those maps, under its id.

// savedProg is a program's file content.
type savedProg struct {
	Type     uint32   `json:"type"`
	Name     string   `json:"name"`
	GPL      bool     `json:"gpl"`
	Expected uint32   `json:"expected_attach_type"`
	Insns    []byte   `json:"insns"` // map references as PseudoMapIdx(Value) into Maps
	Maps     []uint32 `json:"maps"`
	Tag      [8]byte  `json:"tag"`
	LoadTime uint64   `json:"load_time"`
	BTF      uint32   `json:"btf,omitempty"`
	Jited    []byte   `json:"jited,omitempty"` // runtime/jit's code, once compiled
}

// save returns o as a pin file's content.
func (o *progObj) save() ([]byte, error) {
	insns := append([]isa.Instruction(nil), o.insns...)
	for i := range insns {
		in := &insns[i]
		if in.Op != isa.OpLdDW {
			continue
		}
		switch in.Src() {
		case isa.PseudoMapFD, isa.PseudoMapIdx:
			*in = in.SetRegs(in.Dst(), isa.PseudoMapIdx)
			in.Imm = o.prog.Insns[i].Imm
		case isa.PseudoMapValue, isa.PseudoMapIdxValue:
			*in = in.SetRegs(in.Dst(), isa.PseudoMapIdxValue)
			in.Imm = o.prog.Insns[i].Imm
		}
	}
	sp := savedProg{Type: o.typ, Name: o.name, GPL: o.gpl, Expected: o.expected, Insns: isa.Encode(insns),
		Tag: o.tag, LoadTime: o.loadTime}
	for _, m := range o.maps {
		sp.Maps = append(sp.Maps, m.objID)
	}
	if o.btf != nil {
		sp.BTF = o.btf.objID
	}
	sp.Jited = o.jited
	return json.Marshal(sp)
}

// writeHome writes o's file: the program as saved.
func (o *progObj) writeHome() error {
	b, err := o.save()
	if err != nil {
		return err
	}
	if err := o.home.Truncate(0); err != nil {
		return fmt.Errorf("saving program %d: %w", o.objID, err)
	}
	if _, err := o.home.WriteAt(b, 0); err != nil {
		return fmt.Errorf("saving program %d: %w", o.objID, err)
	}
	return nil
}

// reopenProg brings back program id, loaded in another shim (maybe one that has ended), from its
// file at path (its live entry or a pin).
func (s *Server) reopenProg(id uint32, path string) (object, error) {
	home, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, errnoOf(err)
	}
	o, err := s.loadSavedProg(id, home, path)
	if err != nil {
		home.Close()
		return nil, err
	}
	return o, nil
}

// loadSavedProg verifies again the program saved in home.
func (s *Server) loadSavedProg(id uint32, home *os.File, path string) (*progObj, error) {
	st, err := home.Stat()
	if err != nil {
		return nil, errnoOf(err)
	}
	b := make([]byte, st.Size())
	if _, err := home.ReadAt(b, 0); err != nil {
		return nil, errnoOf(err)
	}
	var sp savedProg
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, fmt.Errorf("program %s: %w", path, err)
	}
	insns, err := isa.Decode(sp.Insns)
	if err != nil {
		return nil, fmt.Errorf("program %s: %w", path, err)
	}
	o := &progObj{objID: id, typ: sp.Type, name: sp.Name, gpl: sp.GPL, expected: sp.Expected, tag: sp.Tag, loadTime: sp.LoadTime, home: home, jited: sp.Jited}
	if sp.BTF != 0 {
		if o.btf, err = s.btfByID(sp.BTF); err != nil {
			return nil, fmt.Errorf("program %s: BTF %d: %w", path, sp.BTF, err)
		}
	}
	for _, mid := range sp.Maps {
		m, err := s.mapByID(mid)
		if err != nil {
			return nil, fmt.Errorf("program %s: map %d: %w", path, mid, err)
		}
		o.maps = append(o.maps, m)
	}
	opts := &verifier.Options{
		Type:         program.Type(sp.Type),
		CtxSize:      verifier.CtxSize(program.Type(sp.Type)),
		Helpers:      helper.ForType(sp.Type, s.helpers()),
		GPL:          sp.GPL,
		PossibleCPUs: possibleCPUs(),
		Maps: func(src uint8, ref int32) (program.MapInfo, error) {
			if ref < 0 || int(ref) >= len(o.maps) {
				return program.MapInfo{}, syscall.EINVAL
			}
			m := o.maps[ref]
			return program.MapInfo{ID: m.objID, Type: uint32(m.m.Type()), KeySize: m.m.KeySize(),
				ValueSize: m.m.ValueSize(), MaxEntries: m.m.MaxEntries(), Flags: m.m.Flags(), Frozen: frozenValue(m.m)}, nil
		},
	}
	prog, err := verifier.Verify(insns, opts)
	if err != nil {
		return nil, fmt.Errorf("program %s no longer verifies: %w", path, err)
	}
	o.prog, o.insns = prog, insns
	s.objs.ids[KindProg].reserve(o)
	if err := s.objs.register(o); err != nil {
		delete(s.objs.ids[KindProg].objs, id)
		return nil, err
	}
	return o, nil
}

// mapByID returns map id of this server, or opens it from its live entry.
func (s *Server) mapByID(id uint32) (*mapObj, error) {
	if obj, ok := s.objs.ids[KindMap].objs[id]; ok {
		return obj.(*mapObj), nil
	}
	obj, err := s.reopenMap(id, s.objs.state.livePath(liveName(KindMap, id)))
	if err != nil {
		return nil, err
	}
	return obj.(*mapObj), nil
}

// btfByID returns BTF id of this server, or opens it from its live entry.
func (s *Server) btfByID(id uint32) (*btfObj, error) {
	if obj, ok := s.objs.ids[KindBTF].objs[id]; ok {
		return obj.(*btfObj), nil
	}
	obj, err := s.reopenBTF(id, s.objs.state.livePath(liveName(KindBTF, id)))
	if err != nil {
		return nil, err
	}
	return obj.(*btfObj), nil
}

// reopenMap brings back map id, created in another shim, from its file at path.
func (s *Server) reopenMap(id uint32, path string) (object, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, errnoOf(err)
	}
	defer f.Close()
	mm, err := maps.Open(int(f.Fd()), nil)
	if err != nil {
		return nil, fmt.Errorf("reopening map %d: %w", id, err)
	}
	o := &mapObj{objID: id, m: mm}
	s.loadMapBTF(f, o)
	s.objs.ids[KindMap].reserve(o)
	if err := s.objs.register(o); err != nil {
		delete(s.objs.ids[KindMap].objs, id)
		mm.Close()
		return nil, err
	}
	return o, nil
}

// reopenBTF brings back BTF id, loaded in another shim, from its file at path.
func (s *Server) reopenBTF(id uint32, path string) (object, error) {
	home, err := os.Open(path)
	if err != nil {
		return nil, errnoOf(err)
	}
	data, err := io.ReadAll(home)
	if err != nil {
		home.Close()
		return nil, errnoOf(err)
	}
	b := &btfObj{objID: id, raw: func() ([]byte, error) { return data, nil }, home: home}
	s.objs.ids[KindBTF].reserve(b)
	if err := s.objs.register(b); err != nil {
		delete(s.objs.ids[KindBTF].objs, id)
		home.Close()
		return nil, err
	}
	return b, nil
}

// xattrBTFIDs is the extended attribute of a map's file that names the BTF it was created with:
// "btf_id key_type_id value_type_id".
const xattrBTFIDs = "user.ebpfu.btf_ids"

// saveMapBTF records o's BTF on its file, so that the map keeps it in another shim.
func saveMapBTF(f *os.File, o *mapObj) error {
	ids := fmt.Sprintf("%d %d %d", o.btf.objID, o.btfKey, o.btfValue)
	if err := unix.Fsetxattr(int(f.Fd()), xattrBTFIDs, []byte(ids), 0); err != nil {
		return fmt.Errorf("tagging a map's file (user xattrs needed): %w", err)
	}
	return nil
}

// loadMapBTF gives a reopened map its BTF back.
func (s *Server) loadMapBTF(f *os.File, o *mapObj) {
	idb := make([]byte, 64)
	n, err := unix.Fgetxattr(int(f.Fd()), xattrBTFIDs, idb)
	if err != nil {
		return
	}
	var btfID uint32
	if _, err := fmt.Sscan(string(idb[:n]), &btfID, &o.btfKey, &o.btfValue); err != nil {
		return
	}
	if b, err := s.btfByID(btfID); err == nil {
		o.btf = b
	}
}
