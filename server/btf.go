package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/cilium/ebpf/btf"
)

// kernelBTFID is the id of the kernel's own BTF, as on Linux (vmlinux is the first BTF object).
const kernelBTFID = 1

// btfMaxSize is the kernel's BTF_MAX_SIZE.
const btfMaxSize = 16 * 1024 * 1024

// btfObj is a BTF object: the kernel's vmlinux BTF (id 1) or a blob a caller loaded.
type btfObj struct {
	objID  uint32
	name   string // "vmlinux" for the kernel's, empty for loaded ones
	kernel bool
	// raw returns the blob; the kernel's is read from sysfs on first use.
	raw func() ([]byte, error)
	// home is the object's file: the blob (empty for the kernel's).
	home *os.File
}

func (b *btfObj) kind() Kind     { return KindBTF }
func (b *btfObj) id() uint32     { return b.objID }
func (b *btfObj) fdinfo() string { return fmt.Sprintf("btf_id:\t%d\n", b.objID) }
func (b *btfObj) homeFD() int    { return int(b.home.Fd()) }
func (b *btfObj) close()         { b.home.Close() }

// newBTFHome returns a new file of the state directory holding blob, the home of a BTF object.
func (s *Server) newBTFHome(blob []byte) (*os.File, error) {
	f, err := s.objs.state.objectFile()
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(blob); err != nil {
		f.Close()
		return nil, fmt.Errorf("BTF to the state directory: %w", err)
	}
	return f, nil
}

// kernelBTF returns the kernel's BTF object, reading the blob from path when first asked.
func kernelBTF(path string) *btfObj {
	load := sync.OnceValues(func() ([]byte, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading the kernel's BTF: %w", err)
		}
		return data, nil
	})
	return &btfObj{objID: kernelBTFID, name: "vmlinux", kernel: true, raw: load}
}

// BTF_LOAD attr fields.
const (
	btfLoadData        = 0
	btfLoadLogBuf      = 8
	btfLoadSize        = 16
	btfLoadLogSize     = 20
	btfLoadLogLevel    = 24
	btfLoadLogTrueSize = 28
	btfLoadFlags       = 32
	btfLoadTokenFD     = 36
)

// bpfFTokenFD is BPF_F_TOKEN_FD, the only flag BTF_LOAD knows.
const bpfFTokenFD = 1 << 16

func (s *Server) btfLoad(c *call) (Result, error) {
	a := c.attr
	if a.u32(btfLoadFlags)&^bpfFTokenFD != 0 {
		return Result{}, syscall.EINVAL
	}
	if a.u32(btfLoadFlags)&bpfFTokenFD != 0 {
		// ebpfu has no BPF tokens: the kernel answers a bad token fd with EBADF or EINVAL.
		return Result{}, syscall.EINVAL
	}
	size := a.u32(btfLoadSize)
	if size > btfMaxSize {
		return Result{}, syscall.E2BIG
	}
	log, err := newVlog(c.p, a.u64(btfLoadLogBuf), a.u32(btfLoadLogSize), a.u32(btfLoadLogLevel))
	if err != nil {
		return Result{}, err
	}
	data := make([]byte, size)
	if !accessOK(a.u64(btfLoadData), uint64(size)) {
		return Result{}, syscall.EFAULT
	}
	if err := c.p.ReadMem(a.u64(btfLoadData), data); err != nil {
		return Result{}, err
	}
	msgs, perr := checkBTF(data)
	log.printf("%s", strings.Join(msgs, "\n"))
	if err := s.finishLog(c, log, btfLoadLogTrueSize); err != nil {
		return Result{}, err
	}
	if perr != nil {
		return Result{}, perr
	}
	home, err := s.newBTFHome(data)
	if err != nil {
		return Result{}, err
	}
	obj, err := s.objs.alloc(KindBTF, func(id uint32) object {
		return &btfObj{objID: id, raw: func() ([]byte, error) { return data, nil }, home: home}
	})
	if err != nil {
		home.Close()
		return Result{}, err
	}
	if err := s.publish(obj); err != nil {
		return Result{}, err
	}
	return s.handOutNew(obj)
}

// btfMagic is the BTF header's magic number.
const btfMagic = 0xeb9f

// btfHeaderSize is sizeof(struct btf_header).
const btfHeaderSize = 24

// btfMaxNameOffset is BTF_MAX_NAME_OFFSET.
const btfMaxNameOffset = 0xffff

// checkBTF parses a BTF blob as the kernel's btf_parse does and returns its log (the messages the
// kernel's btf_verifier_log would print) and, for a refused blob, the errno.
func checkBTF(data []byte) ([]string, error) {
	var log []string
	fail := func(errno syscall.Errno, format string, args ...any) ([]string, error) {
		return append(log, fmt.Sprintf(format, args...)), errno
	}
	if len(data) < 8 {
		return fail(syscall.EINVAL, "hdr_len not found")
	}
	hdrLen := binary.LittleEndian.Uint32(data[4:])
	if uint32(len(data)) < hdrLen {
		return fail(syscall.EINVAL, "btf_header not found")
	}
	if hdrLen > btfHeaderSize {
		for _, c := range data[btfHeaderSize:hdrLen] {
			if c != 0 {
				return fail(syscall.E2BIG, "Unsupported btf_header")
			}
		}
	}
	var hdr [btfHeaderSize]byte
	copy(hdr[:], data[:min(hdrLen, btfHeaderSize)])
	u32 := func(off int) uint32 { return binary.LittleEndian.Uint32(hdr[off:]) }
	magic, version, flags := binary.LittleEndian.Uint16(hdr[:]), hdr[2], hdr[3]
	typeOff, typeLen, strOff, strLen := u32(8), u32(12), u32(16), u32(20)
	log = append(log,
		fmt.Sprintf("magic: 0x%x", magic), fmt.Sprintf("version: %d", version),
		fmt.Sprintf("flags: 0x%x", flags), fmt.Sprintf("hdr_len: %d", u32(4)),
		fmt.Sprintf("type_off: %d", typeOff), fmt.Sprintf("type_len: %d", typeLen),
		fmt.Sprintf("str_off: %d", strOff), fmt.Sprintf("str_len: %d", strLen),
		fmt.Sprintf("btf_total_size: %d", len(data)))
	switch {
	case magic != btfMagic:
		return fail(syscall.EINVAL, "Invalid magic")
	case version != 1:
		return fail(errENOTSUPP, "Unsupported version")
	case flags != 0:
		return fail(errENOTSUPP, "Unsupported flags")
	case uint32(len(data)) == hdrLen:
		return fail(syscall.EINVAL, "No data")
	}
	// Sections: sorted by offset, no gaps, no overlap, nothing else after the header.
	secs := [][2]uint32{{typeOff, typeLen}, {strOff, strLen}}
	if secs[1][0] < secs[0][0] {
		secs[0], secs[1] = secs[1], secs[0]
	}
	total, expected := uint32(0), uint32(len(data))-hdrLen
	for _, sec := range secs {
		switch {
		case expected < sec[0]:
			return fail(syscall.EINVAL, "Invalid section offset")
		case total < sec[0]:
			return fail(syscall.EINVAL, "Unsupported section found")
		case total > sec[0]:
			return fail(syscall.EINVAL, "Section overlap found")
		case expected-total < sec[1]:
			return fail(syscall.EINVAL, "Total section length too long")
		}
		total += sec[1]
	}
	if total != expected {
		return fail(syscall.EINVAL, "Unsupported section found")
	}
	strs := data[hdrLen+strOff : hdrLen+strOff+strLen]
	if strLen == 0 || strLen-1 > btfMaxNameOffset || strs[0] != 0 || strs[strLen-1] != 0 {
		return fail(syscall.EINVAL, "Invalid string section")
	}
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(data))
	if err != nil {
		return fail(syscall.EINVAL, "%v", err)
	}
	for _, err := range spec.All() {
		if err != nil {
			return fail(syscall.EINVAL, "%v", err)
		}
	}
	return log, nil
}

// errENOTSUPP is the kernel's internal ENOTSUPP (524), which bpf(2) lets reach user space.
const errENOTSUPP = syscall.Errno(524)

// BTF_GET_FD_BY_ID / *_GET_FD_BY_ID attr fields.
const (
	byIDID        = 0
	byIDNextID    = 4
	byIDOpenFlags = 8
	byIDTokenFD   = 12
)

func (s *Server) btfGetFDByID(c *call) (Result, error) {
	if c.attr.u32(byIDOpenFlags)&^bpfFTokenFD != 0 {
		return Result{}, syscall.EINVAL
	}
	if c.attr.u32(byIDOpenFlags)&bpfFTokenFD != 0 {
		return Result{}, syscall.EBADF
	}
	return s.fdByID(KindBTF, c.attr.u32(byIDID))
}

// btfInfo is struct bpf_btf_info.
type btfInfo struct {
	BTF       uint64
	BTFSize   uint32
	ID        uint32
	Name      uint64
	NameLen   uint32
	KernelBTF uint32
}

// btfGetInfo is the kernel's btf_get_info_by_fd: the blob is copied up to the caller's buffer
// size and the full size reported; the name likewise, with ENOSPC when it was cut.
func (s *Server) btfGetInfo(c *call, b *btfObj, infoLen uint32, uinfo uint64) error {
	var info btfInfo
	n, err := readInfo(c.p, uinfo, infoLen, bytesOf(&info))
	if err != nil {
		return err
	}
	info.ID = b.objID
	raw, err := b.raw()
	if err != nil {
		s.logf("bpf(BPF_OBJ_GET_INFO_BY_FD): %v", err)
		return syscall.EFAULT
	}
	cp := min(uint32(len(raw)), info.BTFSize)
	if cp > 0 {
		if err := writeUser(c.p, info.BTF, raw[:cp]); err != nil {
			return err
		}
	}
	info.BTFSize = uint32(len(raw))
	if b.kernel {
		info.KernelBTF = 1
	}
	uname, unameLen := info.Name, info.NameLen
	if (uname == 0) != (unameLen == 0) {
		return syscall.EINVAL
	}
	info.NameLen = uint32(len(b.name))
	var ret error
	if uname != 0 {
		name := append([]byte(b.name), 0)
		if unameLen < uint32(len(name)) {
			name = append(name[:unameLen-1:unameLen-1], 0)
			ret = syscall.ENOSPC
		}
		if err := writeUser(c.p, uname, name); err != nil {
			return err
		}
	}
	if err := writeUser(c.p, uinfo, bytesOf(&info)[:n]); err != nil {
		return err
	}
	if err := c.attr.put32(c.p, infoInfoLen, n); err != nil {
		return err
	}
	return ret
}
