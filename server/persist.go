package server

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/maps"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/runtime/verifier"
	"golang.org/x/sys/unix"
)

// A pinned program outlives its shim as a pin file holding the program as loaded, with its map
// references turned into indexes into its list of map ids; the maps it uses stay alive as links
// named map-ID in the state directory's objects/, which the last pin that needs them removes.
// Another shim reopens the program by verifying it again on those maps, under its old id.

// savedProg is a pinned program's file content.
type savedProg struct {
	Type     uint32   `json:"type"`
	Name     string   `json:"name"`
	GPL      bool     `json:"gpl"`
	Expected uint32   `json:"expected_attach_type"`
	Insns    []byte   `json:"insns"` // map references as PseudoMapIdx(Value) into Maps
	Maps     []uint32 `json:"maps"`
	Tag      [8]byte  `json:"tag"`
	LoadTime uint64   `json:"load_time"`
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
	return json.Marshal(sp)
}

// mapLink is where a map used by a pinned program is kept alive.
func (s *Server) mapLink(id uint32) string {
	return filepath.Join(s.objs.state.dir, "objects", "map-"+strconv.FormatUint(uint64(id), 10))
}

// keepMaps links the maps of a program being pinned under their ids.
func (s *Server) keepMaps(o *progObj) error {
	for _, m := range o.maps {
		err := linkFD(m.m.FD(), s.mapLink(m.objID))
		if err != nil && err != syscall.EEXIST {
			return fmt.Errorf("keeping map %d of pinned program %d: %w", m.objID, o.objID, err)
		}
	}
	return nil
}

// reopenProg brings back a program another shim pinned, from its pin file at path.
func (s *Server) reopenProg(id uint32, path string) (object, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errnoOf(err)
	}
	var sp savedProg
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, fmt.Errorf("pinned program %s: %w", path, err)
	}
	insns, err := isa.Decode(sp.Insns)
	if err != nil {
		return nil, fmt.Errorf("pinned program %s: %w", path, err)
	}
	o := &progObj{objID: id, typ: sp.Type, name: sp.Name, gpl: sp.GPL, expected: sp.Expected, tag: sp.Tag, loadTime: sp.LoadTime}
	for _, mid := range sp.Maps {
		m, err := s.mapByID(mid)
		if err != nil {
			return nil, fmt.Errorf("pinned program %s: map %d: %w", path, mid, err)
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
				ValueSize: m.m.ValueSize(), MaxEntries: m.m.MaxEntries(), Flags: m.m.Flags()}, nil
		},
	}
	prog, err := verifier.Verify(insns, opts)
	if err != nil {
		return nil, fmt.Errorf("pinned program %s no longer verifies: %w", path, err)
	}
	o.prog, o.insns = prog, insns
	for _, m := range o.maps {
		s.hold(m)
	}
	s.objs.ids[KindProg].reserve(o)
	return o, nil
}

// mapByID returns map id of this server, or reopens it from the state directory where a pin
// keeps it.
func (s *Server) mapByID(id uint32) (*mapObj, error) {
	if obj, ok := s.objs.ids[KindMap].objs[id]; ok {
		return obj.(*mapObj), nil
	}
	return s.reopenMap(id, s.mapLink(id))
}

// reopenMap brings back map id from a file of its shared memory at path.
func (s *Server) reopenMap(id uint32, path string) (*mapObj, error) {
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
	s.objs.ids[KindMap].reserve(o)
	s.loadMapBTF(f, o)
	return o, nil
}

// Extended attributes of a map's state file that keep the BTF it was created with.
const (
	xattrBTF    = "user.ebpfu.btf"     // the blob
	xattrBTFIDs = "user.ebpfu.btf_ids" // "btf_id key_type_id value_type_id"
)

// saveMapBTF records o's BTF on its state file, so that the map keeps it in another shim.
func saveMapBTF(f *os.File, o *mapObj) error {
	raw, err := o.btf.raw()
	if err != nil {
		return err
	}
	if err := unix.Fsetxattr(int(f.Fd()), xattrBTF, raw, 0); err != nil {
		return nil // too large for an attribute: the map is kept without its BTF
	}
	ids := fmt.Sprintf("%d %d %d", o.btf.objID, o.btfKey, o.btfValue)
	return unix.Fsetxattr(int(f.Fd()), xattrBTFIDs, []byte(ids), 0)
}

// loadMapBTF gives a reopened map its BTF back, under the BTF's old id when that is free here.
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
	size, err := unix.Fgetxattr(int(f.Fd()), xattrBTF, nil)
	if err != nil || size <= 0 {
		return
	}
	raw := make([]byte, size)
	if n, err = unix.Fgetxattr(int(f.Fd()), xattrBTF, raw); err != nil {
		return
	}
	raw = raw[:n]
	if obj, ok := s.objs.ids[KindBTF].objs[btfID]; ok {
		if b, ok := obj.(*btfObj); ok && !b.kernel {
			o.btf = b
		}
	} else {
		b := &btfObj{objID: btfID, raw: func() ([]byte, error) { return raw, nil }}
		s.objs.ids[KindBTF].reserve(b)
		o.btf = b
	}
	if o.btf != nil {
		s.hold(o.btf)
	}
}

// dropUnneededMapLinks removes the map-ID links that no pinned program needs any more.
func (s *Server) dropUnneededMapLinks() {
	dir := filepath.Join(s.objs.state.dir, "objects")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var links []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "map-") {
			links = append(links, e.Name())
		}
	}
	if len(links) == 0 {
		return
	}
	needed := map[string]bool{}
	filepath.WalkDir(s.bpffs.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if k, _, ok := objectTag(path); !ok || k != KindProg {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		var sp savedProg
		if json.Unmarshal(b, &sp) == nil {
			for _, id := range sp.Maps {
				needed["map-"+strconv.FormatUint(uint64(id), 10)] = true
			}
		}
		return nil
	})
	for _, l := range links {
		if !needed[l] {
			os.Remove(filepath.Join(dir, l))
		}
	}
}
