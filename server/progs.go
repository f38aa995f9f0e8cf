package server

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/maps"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/runtime/verifier"
)

// progObj is a loaded program: the verified program, and what the kernel keeps beside it.
type progObj struct {
	objID    uint32
	typ      uint32
	name     string
	insns    []isa.Instruction // as loaded (lddw imm still the caller's fds)
	prog     *program.Program
	maps     []*mapObj // the maps it uses, in prog.Maps order, then those bound with PROG_BIND_MAP
	gpl      bool
	tag      [8]byte
	loadTime uint64 // boot-time ns
	btf      *btfObj
	expected uint32   // expected_attach_type
	home     *os.File // the object's file: the program as a savedProg (persist.go)
	// jited is runtime/jit's code for the program once the probe path compiled it (reported
	// as the kernel reports a JIT image); nil while the program is only interpreted.
	jited []byte

	runCnt, runTimeNs uint64
}

func (o *progObj) kind() Kind  { return KindProg }
func (o *progObj) id() uint32  { return o.objID }
func (o *progObj) homeFD() int { return int(o.home.Fd()) }
func (o *progObj) close()      { o.home.Close() }

func (o *progObj) fdinfo() string {
	jited := 0
	if len(o.jited) > 0 {
		jited = 1
	}
	return fmt.Sprintf("prog_type:\t%d\nprog_jited:\t%d\nprog_tag:\t%x\nmemlock:\t%d\nprog_id:\t%d\nrun_time_ns:\t%d\nrun_cnt:\t%d\nrecursion_misses:\t0\nverified_insns:\t%d\n",
		o.typ, jited, o.tag, progMemlock(len(o.insns)), o.objID, o.runTimeNs, o.runCnt, o.verifiedInsns())
}

// verifiedInsns is the kernel's verified_insns: the instructions the verifier processed.
func (o *progObj) verifiedInsns() int {
	if o.prog == nil {
		return len(o.insns)
	}
	return o.prog.VerifiedInsns
}

// progMemlock is the kernel's memlock of a program of n instructions: struct bpf_prog and its
// instructions, in pages.
func progMemlock(n int) int {
	const sizeofBPFProg = 72
	return (sizeofBPFProg + 8*n + kernelPageSize - 1) / kernelPageSize * kernelPageSize
}

// progTag is the kernel's bpf_prog_calc_tag: the first 8 bytes of the SHA-256 (Linux 6.18; SHA-1
// before) of the instructions with the immediates of map references zeroed.
func progTag(insns []isa.Instruction) [8]byte {
	raw := make([]byte, 0, 8*len(insns))
	wasLdMap := false
	for _, in := range insns {
		switch {
		case !wasLdMap && in.Op == isa.OpLdDW && (in.Src() == isa.PseudoMapFD || in.Src() == isa.PseudoMapValue):
			wasLdMap = true
			in.Imm = 0
		case wasLdMap && in.Op == 0 && in.Regs == 0 && in.Off == 0:
			wasLdMap = false
			in.Imm = 0
		default:
			wasLdMap = false
		}
		raw = append(raw, isa.Encode([]isa.Instruction{in})...)
	}
	sum := sha256.Sum256(raw)
	var tag [8]byte
	copy(tag[:], sum[:8])
	return tag
}

// PROG_LOAD attr fields.
const (
	plType            = 0
	plInsnCnt         = 4
	plInsns           = 8
	plLicense         = 16
	plLogLevel        = 24
	plLogSize         = 28
	plLogBuf          = 32
	plKernVersion     = 40
	plFlags           = 44
	plName            = 48
	plIfindex         = 64
	plExpectedAttach  = 68
	plBTFFD           = 72
	plFuncInfoRecSize = 76
	plFuncInfo        = 80
	plFuncInfoCnt     = 88
	plLineInfoRecSize = 92
	plLineInfo        = 96
	plLineInfoCnt     = 104
	plAttachBTFID     = 108
	plAttachProgFD    = 112
	plCoreReloCnt     = 116
	plFDArray         = 120
	plCoreRelos       = 128
	plCoreReloRecSize = 136
	plLogTrueSize     = 140
	plTokenFD         = 144
	plFDArrayCnt      = 148
	plSignature       = 152
	plSignatureSize   = 160
	plKeyringID       = 164

	// Program flags the kernel knows (BPF_F_STRICT_ALIGNMENT ... BPF_F_TEST_REG_INVARIANTS, and
	// BPF_F_TOKEN_FD).
	progFlagsKnown = 1<<0 | 1<<1 | 1<<3 | 1<<4 | 1<<2 | 1<<5 | 1<<6 | 1<<7 | bpfFTokenFD
	progFSleepable = 1 << 4

	maxInsnsPriv = 1000000 // BPF_COMPLEXITY_LIMIT_INSNS
)

// Program types the server answers for specially: LIRC_MODE2 is not built into the kernel ebpfu
// answers as (CONFIG_BPF_LIRC_MODE2), STRUCT_OPS programs implement kernel structures.
const (
	progTypeLircMode2 = 20
	progTypeStructOps = 27
)

// progTypes are the kernel's program types (enum bpf_prog_type up to Linux 6.18's last one);
// others are EINVAL.
const numProgTypes = 33

func (s *Server) progLoad(c *call) (Result, error) {
	a := c.attr
	if a.u32(plFlags)&^progFlagsKnown != 0 {
		return Result{}, syscall.EINVAL
	}
	if a.u32(plFlags)&bpfFTokenFD != 0 {
		return Result{}, syscall.EINVAL // ebpfu has no BPF tokens
	}
	n := a.u32(plInsnCnt)
	if n == 0 || n > maxInsnsPriv {
		return Result{}, syscall.E2BIG
	}
	typ := a.u32(plType)
	code := make([]byte, 8*int(n))
	if err := readUser(c.p, a.u64(plInsns), code); err != nil {
		return Result{}, err
	}
	license, err := c.p.ReadString(a.u64(plLicense), 127)
	if err != nil {
		if err == syscall.ENAMETOOLONG {
			license = "" // the kernel cuts the license to 127 bytes
		} else if isErrno(err) {
			return Result{}, syscall.EFAULT
		} else {
			return Result{}, err
		}
	}
	if typ == 0 || typ >= numProgTypes || typ == progTypeLircMode2 {
		return Result{}, syscall.EINVAL // unknown, or not built into the kernel ebpfu answers as
	}
	name, err := a.name(plName)
	if err != nil {
		return Result{}, err
	}
	log, err := newVlog(c.p, a.u64(plLogBuf), a.u32(plLogSize), a.u32(plLogLevel))
	if err != nil {
		return Result{}, err
	}
	insns, err := isa.Decode(code)
	if err != nil {
		return Result{}, syscall.EINVAL
	}
	if typ == progTypeStructOps {
		// ebpfu has no kernel structures to implement: the kernel's answer to an attach_btf_id
		// naming none it knows.
		log.printf("attach_btf_id %d is not a supported struct\n", a.u32(plAttachBTFID))
		if err := s.finishLog(c, log, plLogTrueSize); err != nil {
			return Result{}, err
		}
		return Result{}, errENOTSUPP
	}
	o := &progObj{typ: typ, name: name, insns: insns, gpl: gplCompatible(license), expected: a.u32(plExpectedAttach)}
	if fd := a.s32(plBTFFD); fd != 0 || a.u32(plFuncInfoCnt) != 0 || a.u32(plLineInfoCnt) != 0 {
		if b, err := s.btfOfFD(c.p, fd); err == nil {
			o.btf = b // func and line info are kept for bpftool, not checked
		} else if a.u32(plFuncInfoCnt) != 0 || a.u32(plLineInfoCnt) != 0 {
			return Result{}, err
		}
	}
	opts := &verifier.Options{
		Type:         program.Type(typ),
		CtxSize:      verifier.CtxSize(program.Type(typ)),
		Helpers:      helper.ForType(typ, s.helpers()),
		GPL:          o.gpl,
		Log:          log,
		LogLevel:     log.level,
		Sleepable:    a.u32(plFlags)&progFSleepable != 0,
		PossibleCPUs: possibleCPUs(),
	}
	opts.Maps = func(src uint8, ref int32) (program.MapInfo, error) {
		fd := ref
		if src == isa.PseudoMapIdx || src == isa.PseudoMapIdxValue {
			if a.u64(plFDArray) == 0 || ref < 0 || a.u32(plFDArrayCnt) != 0 && uint32(ref) >= a.u32(plFDArrayCnt) {
				return program.MapInfo{}, &verifier.Error{Errno: syscall.EINVAL, Msg: fmt.Sprintf("fd_idx %d is not pointing to valid bpf_map", ref)}
			}
			var b [4]byte
			if err := readUser(c.p, a.u64(plFDArray)+4*uint64(ref), b[:]); err != nil {
				return program.MapInfo{}, &verifier.Error{Errno: syscall.EFAULT, Msg: "fd_array is unreadable"}
			}
			fd = int32(binary.LittleEndian.Uint32(b[:]))
		}
		m, err := s.mapOfFD(c, fd)
		if err != nil {
			return program.MapInfo{}, &verifier.Error{Errno: errnoOf(err).(syscall.Errno), Msg: fmt.Sprintf("fd %d is not pointing to valid bpf_map", fd)}
		}
		o.maps = append(o.maps, m)
		return program.MapInfo{ID: m.objID, Type: uint32(m.m.Type()), KeySize: m.m.KeySize(),
			ValueSize: m.m.ValueSize(), MaxEntries: m.m.MaxEntries(), Flags: m.m.Flags(), Frozen: frozenValue(m.m)}, nil
	}
	prog, verr := verifier.Verify(insns, opts)
	if err := s.finishLog(c, log, plLogTrueSize); err != nil {
		return Result{}, err
	}
	if verr != nil {
		return Result{}, verifier.Errno(verr)
	}
	o.prog = prog
	o.tag = progTag(insns)
	o.loadTime = bootTimeNs()
	if o.home, err = s.objs.state.objectFile(); err != nil {
		return Result{}, err
	}
	if _, err := s.objs.alloc(KindProg, func(id uint32) object { o.objID = id; return o }); err != nil {
		o.home.Close()
		return Result{}, err
	}
	if err := o.writeHome(); err != nil {
		s.forget(o)
		return Result{}, err
	}
	if err := s.publish(o); err != nil {
		return Result{}, err
	}
	for _, m := range o.maps {
		if err := s.keep(o, m); err != nil {
			s.dropNew(o)
			return Result{}, err
		}
	}
	if o.btf != nil {
		if err := s.keep(o, o.btf); err != nil {
			s.dropNew(o)
			return Result{}, err
		}
	}
	return s.handOutNew(o)
}

// setJited records the JIT's code for o, compiled for the probe path, so that program info shows
// it as the kernel shows its JIT image, in every shim.
func (o *progObj) setJited(text []byte) {
	o.jited = text
	o.writeHome()
}

// gplCompatible is the kernel's license_is_gpl_compatible.
func gplCompatible(l string) bool {
	switch l {
	case "GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL":
		return true
	}
	return false
}

func isErrno(err error) bool {
	_, ok := err.(syscall.Errno)
	return ok
}

// bootTimeNs is ktime_get_boottime_ns.
func bootTimeNs() uint64 {
	var ts syscall.Timespec
	const clockBoottime = 7
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockBoottime, uintptrOf(&ts), 0)
	return uint64(ts.Sec)*uint64(time.Second) + uint64(ts.Nsec)
}

// progOfFD returns the program behind the caller's fd: EBADF when the fd is not open, EINVAL when
// it is not a program.
func (s *Server) progOfFD(c *call, fd int32) (*progObj, error) {
	obj, err := s.objs.lookupFD(c.p, fd)
	if err != nil {
		return nil, err
	}
	o, ok := obj.(*progObj)
	if !ok {
		return nil, syscall.EINVAL
	}
	return o, nil
}

// PROG_BIND_MAP attr fields.
const (
	bindProgFD = 0
	bindMapFD  = 4
	bindFlags  = 8
)

func (s *Server) progBindMap(c *call) (Result, error) {
	if c.attr.u32(bindFlags) != 0 {
		return Result{}, syscall.EINVAL
	}
	p, err := s.progOfFD(c, c.attr.s32(bindProgFD))
	if err != nil {
		return Result{}, err
	}
	m, err := s.mapOfFD(c, c.attr.s32(bindMapFD))
	if err != nil {
		return Result{}, err
	}
	for _, used := range p.maps {
		if used == m {
			return Result{}, nil
		}
	}
	if err := s.keep(p, m); err != nil {
		return Result{}, err
	}
	p.maps = append(p.maps, m)
	return Result{}, p.writeHome()
}

// progInfo is struct bpf_prog_info (Linux 6.18).
type progInfo struct {
	Type                 uint32
	ID                   uint32
	Tag                  [8]byte
	JitedProgLen         uint32
	XlatedProgLen        uint32
	JitedProgInsns       uint64
	XlatedProgInsns      uint64
	LoadTime             uint64
	CreatedByUID         uint32
	NrMapIDs             uint32
	MapIDs               uint64
	Name                 [objNameLen]byte
	Ifindex              uint32
	Bits                 uint32 // gpl_compatible:1
	NetnsDev             uint64
	NetnsIno             uint64
	NrJitedKsyms         uint32
	NrJitedFuncLens      uint32
	JitedKsyms           uint64
	JitedFuncLens        uint64
	BTFID                uint32
	FuncInfoRecSize      uint32
	FuncInfo             uint64
	NrFuncInfo           uint32
	NrLineInfo           uint32
	LineInfo             uint64
	JitedLineInfo        uint64
	NrJitedLineInfo      uint32
	LineInfoRecSize      uint32
	JitedLineInfoRecSize uint32
	NrProgTags           uint32
	ProgTags             uint64
	RunTimeNs            uint64
	RunCnt               uint64
	RecursionMisses      uint64
	VerifiedInsns        uint32
	AttachBTFObjID       uint32
	AttachBTFID          uint32
	_                    uint32
}

// progGetInfo is the kernel's bpf_prog_get_info_by_fd for a program that is not JIT-compiled
// in the kernel's sense: counts for every array, copies of what the caller has room for.
func (s *Server) progGetInfo(c *call, o *progObj, infoLen uint32, uinfo uint64) error {
	var info progInfo
	n, err := readInfo(c.p, uinfo, infoLen, bytesOf(&info))
	if err != nil {
		return err
	}
	info.Type, info.ID, info.Tag, info.LoadTime = o.typ, o.objID, o.tag, o.loadTime
	info.CreatedByUID = 0
	if o.gpl {
		info.Bits |= 1
	}
	copy(info.Name[:], o.name)
	ulen := min(info.NrMapIDs, uint32(len(o.maps)))
	info.NrMapIDs = uint32(len(o.maps))
	for i := range ulen {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], o.maps[i].objID)
		if err := writeUser(c.p, info.MapIDs+4*uint64(i), b[:]); err != nil {
			return err
		}
	}
	for _, rec := range []struct {
		size *uint32
		want uint32
	}{{&info.FuncInfoRecSize, 8}, {&info.LineInfoRecSize, 16}, {&info.JitedLineInfoRecSize, 8}} {
		if *rec.size != 0 && *rec.size != rec.want {
			return syscall.EINVAL
		}
		*rec.size = rec.want
	}
	info.RunTimeNs, info.RunCnt, info.VerifiedInsns = o.runTimeNs, o.runCnt, uint32(o.verifiedInsns())
	if o.btf != nil {
		info.BTFID = o.btf.objID
	}
	ulen = info.XlatedProgLen
	info.XlatedProgLen = uint32(8 * len(o.insns))
	if ulen > 0 {
		dump := isa.Encode(o.xlated())
		if err := writeUser(c.p, info.XlatedProgInsns, dump[:min(ulen, info.XlatedProgLen)]); err != nil {
			return err
		}
	}
	// The JIT's code once the probe path compiled the program (o.jited), else none: the kernel's
	// answers for a program it interprets.
	ulen = info.JitedProgLen
	info.JitedProgLen = uint32(len(o.jited))
	if info.JitedProgLen > 0 && ulen > 0 {
		if err := writeUser(c.p, info.JitedProgInsns, o.jited[:min(ulen, info.JitedProgLen)]); err != nil {
			return err
		}
	}
	ulen = info.NrJitedKsyms
	info.NrJitedKsyms = 1
	if ulen > 0 && info.JitedKsyms != 0 {
		if err := writeUser(c.p, info.JitedKsyms, make([]byte, 8)); err != nil {
			return err
		}
	}
	ulen = info.NrJitedFuncLens
	info.NrJitedFuncLens = 1
	if ulen > 0 && info.JitedFuncLens != 0 {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(len(o.jited)))
		if err := writeUser(c.p, info.JitedFuncLens, b[:]); err != nil {
			return err
		}
	}
	info.NrFuncInfo, info.NrLineInfo, info.NrJitedLineInfo = 0, 0, 0
	ulen = info.NrProgTags
	info.NrProgTags = 1
	if ulen > 0 {
		if err := writeUser(c.p, info.ProgTags, o.tag[:]); err != nil {
			return err
		}
	}
	if err := writeUser(c.p, uinfo, bytesOf(&info)[:n]); err != nil {
		return err
	}
	return c.attr.put32(c.p, infoInfoLen, n)
}

// xlated returns the instructions as the kernel dumps them: map references by map id.
func (o *progObj) xlated() []isa.Instruction {
	out := append([]isa.Instruction(nil), o.insns...)
	mi := 0
	for i := range out {
		in := &out[i]
		if in.Op == isa.OpLdDW && (in.Src() == isa.PseudoMapFD || in.Src() == isa.PseudoMapValue ||
			in.Src() == isa.PseudoMapIdx || in.Src() == isa.PseudoMapIdxValue) && mi < len(o.prog.Maps) {
			idx := o.prog.Insns[i].Imm
			if int(idx) < len(o.prog.Maps) {
				in.Imm = int32(o.prog.Maps[idx].ID)
			}
		}
	}
	return out
}

// uintptrOf is the address of v, for raw syscalls.
func uintptrOf[T any](v *T) uintptr { return uintptr(unsafe.Pointer(v)) }

// possibleCPUs is the number of possible CPUs (the per-CPU slots of maps); 1 when unknown.
func possibleCPUs() int {
	n, err := maps.PossibleCPUs()
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// frozenValue returns the value of a frozen read-only array of one entry (libbpf's .rodata), whose
// loads the verifier knows as constants, as the kernel's does (branches on configuration flags
// are pruned); nil for other maps.
func frozenValue(m *maps.Map) []byte {
	if m.Type() != maps.Array || m.MaxEntries() != 1 || !m.Frozen() || m.Flags()&maps.FlagRdonlyProg == 0 {
		return nil
	}
	v := make([]byte, m.ValueSize())
	if m.Lookup(make([]byte, 4), v, 0) != nil {
		return nil
	}
	return v
}
