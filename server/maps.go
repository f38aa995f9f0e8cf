package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/ebpfu/ebpfu/runtime/maps"
	"golang.org/x/sys/unix"
)

// mapObj is a map: a shared-memory map of runtime/maps, and what the kernel keeps beside it.
type mapObj struct {
	objID uint32
	m     *maps.Map
	// BTF the map was created with (btf_fd, btf_key_type_id, btf_value_type_id).
	btf               *btfObj
	btfKey, btfValue  uint32
	btfVmlinuxValueID uint32
	waiter            *ringWaiter // a ring buffer polled by callers, nil until one is
}

func (o *mapObj) kind() Kind  { return KindMap }
func (o *mapObj) id() uint32  { return o.objID }
func (o *mapObj) homeFD() int { return o.m.FD() }

// close releases the map's memory, or has its ring waiter do so once it stops waiting on it.
func (o *mapObj) close() {
	if o.waiter == nil {
		o.m.Close()
		return
	}
	for fd := range o.waiter.wakers {
		unix.Close(fd)
	}
	o.waiter.wakers = nil
	close(o.waiter.stop)
}

// ringWaiter stands for a BPF ring buffer in callers' epoll sets: eventfds written when the
// ring's notification word moves (bpf_ringbuf_submit and _output wake consumers through it).
type ringWaiter struct {
	wakers map[int]bool
	stop   chan struct{} // closed when the map is freed; the waiter then unmaps it
}

// ringWaiter returns o's waiter, starting it on first use.
func (s *Server) ringWaiter(o *mapObj) *ringWaiter {
	if o.waiter == nil {
		o.waiter = &ringWaiter{wakers: map[int]bool{}, stop: make(chan struct{})}
		go s.wakeOnRing(o.m, o.waiter)
	}
	return o.waiter
}

// wakeOnRing writes w's wakers whenever m's notification word moves, until w stops; then it
// unmaps m, which it alone may still be waiting on.
func (s *Server) wakeOnRing(m *maps.Map, w *ringWaiter) {
	defer m.Close()
	seq := m.NotifySeq()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		if next := m.WaitNotify(seq, 100*time.Millisecond); next != seq {
			seq = next
			s.mu.Lock()
			wakeAll(w.wakers)
			s.mu.Unlock()
		}
	}
}

func (o *mapObj) fdinfo() string {
	m := o.m
	frozen := 0
	if m.Frozen() {
		frozen = 1
	}
	return fmt.Sprintf("map_type:\t%d\nkey_size:\t%d\nvalue_size:\t%d\nmax_entries:\t%d\nmap_flags:\t%#x\nmap_extra:\t%#x\nmemlock:\t%d\nmap_id:\t%d\nfrozen:\t%d\n",
		m.Type(), m.KeySize(), m.ValueSize(), m.MaxEntries(), m.Flags(), 0, memlock(m), o.objID, frozen)
}

// Sizes of the kernel's map structures on Linux 6.18 x86-64, from which it computes the memlock
// figure that fdinfo and bpftool show (measured: the figures below reproduce the kernel's).
const (
	sizeofBPFArray    = 312 // struct bpf_array
	sizeofBPFHtab     = 832 // struct bpf_htab
	sizeofHtabBucket  = 16  // struct bucket
	sizeofHtabElem    = 48  // struct htab_elem
	htabLockCount     = 8   // HASHTAB_MAP_LOCK_COUNT
	sizeofRingbufMap  = 304 // struct bpf_ringbuf_map
	ringbufMetaPages  = 3   // RINGBUF_NR_META_PAGES
	sizeofStackMap    = 320 // struct bpf_stack_map
	sizeofStackBucket = 16  // struct stack_map_bucket
	kernelPageSize    = 4096
)

// memlock is the kernel's map_mem_usage of m.
func memlock(m *maps.Map) uint64 {
	round8 := func(n uint32) uint64 { return (uint64(n) + 7) &^ 7 }
	pageAlign := func(n uint64) uint64 { return (n + kernelPageSize - 1) &^ (kernelPageSize - 1) }
	entries, ncpu := uint64(m.MaxEntries()), uint64(m.NumCPU())
	switch t := m.Type(); t {
	case maps.Array, maps.PercpuArray, maps.PerfEventArray, maps.ProgArray, maps.CgroupArray:
		elem := round8(m.ValueSize())
		switch {
		case t == maps.PercpuArray:
			return sizeofBPFArray + entries*8 + entries*elem*ncpu
		case m.Flags()&maps.FlagMmapable != 0:
			return pageAlign(sizeofBPFArray) + pageAlign(entries*elem)
		}
		return sizeofBPFArray + entries*elem
	case maps.Hash, maps.PercpuHash, maps.LRUHash, maps.LRUPercpuHash:
		percpu, lru := t.PerCPU(), t == maps.LRUHash || t == maps.LRUPercpuHash
		buckets := uint64(1)
		for buckets < entries {
			buckets <<= 1
		}
		elem := sizeofHtabElem + round8(m.KeySize())
		if percpu {
			elem += 8
		} else {
			elem += round8(m.ValueSize())
		}
		usage := sizeofBPFHtab + sizeofHtabBucket*buckets + 4*ncpu*htabLockCount
		if m.Flags()&maps.FlagNoPrealloc != 0 {
			return usage // plus the live elements, which the kernel counts and ebpfu does not yet
		}
		n := entries
		if !percpu && !lru {
			n += ncpu // the extra elements of a preallocated hash
		}
		usage += elem * n
		if percpu {
			usage += round8(m.ValueSize()) * ncpu * n
		} else if !lru {
			usage += 8 * ncpu
		}
		return usage
	case maps.RingBuf:
		data := entries / kernelPageSize
		return sizeofRingbufMap + ringbufMetaPages*kernelPageSize + (ringbufMetaPages+2*data)*8 + data*kernelPageSize
	case maps.StackTrace:
		buckets := uint64(1)
		for buckets < entries {
			buckets <<= 1
		}
		return sizeofStackMap + buckets*8 + entries*(sizeofStackBucket+uint64(m.ValueSize()))
	}
	return 0
}

// MAP_CREATE attr fields.
const (
	mcType            = 0
	mcKeySize         = 4
	mcValueSize       = 8
	mcMaxEntries      = 12
	mcFlags           = 16
	mcInnerMapFD      = 20
	mcNumaNode        = 24
	mcName            = 28
	mcIfindex         = 44
	mcBTFFD           = 48
	mcBTFKey          = 52
	mcBTFValue        = 56
	mcBTFVmlinuxValue = 60
	mcMapExtra        = 64
	mcValueTypeBTFFD  = 72
	mcTokenFD         = 76
	mcExclProgHash    = 80
	mcExclProgHashLen = 88

	mapTypeStructOps = 26
	mapTypeBloom     = 30
	mapTypeArena     = 33
)

// mapTypeServed are the map types runtime/maps holds.
var mapTypeServed = map[uint32]bool{
	uint32(maps.Hash): true, uint32(maps.Array): true, uint32(maps.ProgArray): true,
	uint32(maps.PerfEventArray): true, uint32(maps.PercpuHash): true, uint32(maps.PercpuArray): true,
	uint32(maps.CgroupArray): true,
	uint32(maps.StackTrace):  true, uint32(maps.LRUHash): true, uint32(maps.LRUPercpuHash): true,
	uint32(maps.RingBuf): true,
}

func (s *Server) mapCreate(c *call) (Result, error) {
	a := c.attr
	flags := a.u32(mcFlags)
	if flags&bpfFTokenFD != 0 {
		return Result{}, syscall.EINVAL // ebpfu has no BPF tokens
	}
	typ := a.u32(mcType)
	switch {
	case a.u32(mcBTFVmlinuxValue) != 0:
		if typ != mapTypeStructOps || a.u32(mcBTFKey) != 0 || a.u32(mcBTFValue) != 0 {
			return Result{}, syscall.EINVAL
		}
	case a.u32(mcBTFKey) != 0 && a.u32(mcBTFValue) == 0:
		return Result{}, syscall.EINVAL
	}
	if typ != mapTypeBloom && typ != mapTypeArena && a.u64(mcMapExtra) != 0 {
		return Result{}, syscall.EINVAL
	}
	if typ == mapTypeStructOps {
		s.logf("bpf(BPF_MAP_CREATE): struct_ops maps are not supported")
		return Result{}, errENOTSUPP
	}
	name := a.b[mcName : mcName+objNameLen]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	spec := &maps.Spec{
		Type:       maps.Type(typ),
		KeySize:    a.u32(mcKeySize),
		ValueSize:  a.u32(mcValueSize),
		MaxEntries: a.u32(mcMaxEntries),
		Flags:      flags,
		Name:       string(name),
		NumaNode:   a.u32(mcNumaNode),
		MapExtra:   a.u64(mcMapExtra),
	}
	if !mapTypeServed[typ] {
		if typ > 0 && int(typ) < len(mapTypeNames) {
			s.logf("bpf(BPF_MAP_CREATE): %s maps are not supported yet", mapTypeName(typ))
		}
		return Result{}, syscall.EINVAL
	}
	if err := spec.Validate(); err != nil {
		return Result{}, err
	}
	if a.u32(mcIfindex) != 0 {
		return Result{}, syscall.EINVAL // no offload devices
	}
	if a.u64(mcExclProgHash) != 0 || a.u32(mcExclProgHashLen) != 0 {
		return Result{}, syscall.EINVAL // exclusive maps need signed programs
	}
	o := &mapObj{btfKey: a.u32(mcBTFKey), btfValue: a.u32(mcBTFValue)}
	if o.btfKey != 0 || o.btfValue != 0 {
		b, err := s.btfOfFD(c.p, a.s32(mcBTFFD))
		if err != nil {
			return Result{}, err
		}
		if b.kernel {
			return Result{}, syscall.EACCES
		}
		if err := checkMapBTF(b, o.btfKey, o.btfValue, spec.KeySize, spec.ValueSize); err != nil {
			return Result{}, err
		}
		o.btf = b
	}
	m, err := maps.Create(spec, nil)
	if err != nil {
		return Result{}, errnoOrEINVAL(err)
	}
	defer m.Close()
	if _, err := s.objs.alloc(KindMap, func(id uint32) object { o.objID = id; return o }); err != nil {
		return Result{}, err
	}
	if o.m, err = s.persistentMap(m, o); err != nil {
		delete(s.objs.ids[KindMap].objs, o.objID)
		return Result{}, err
	}
	if err := s.publish(o); err != nil {
		return Result{}, err
	}
	if o.btf != nil {
		if err := s.keep(o, o.btf); err != nil {
			s.dropNew(o)
			return Result{}, err
		}
	}
	return s.handOutNew(o)
}

// persistentMap copies a new map from its memfd to an unnamed file of the state directory (whose
// closes inotify reports, and which the live entry and pins link to), with o's BTF ids.
func (s *Server) persistentMap(m *maps.Map, o *mapObj) (*maps.Map, error) {
	f, err := s.objs.state.objectFile()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := copySparse(f, m.FD()); err != nil {
		return nil, fmt.Errorf("map %d to the state directory: %w", o.objID, err)
	}
	if o.btf != nil {
		if err := saveMapBTF(f, o); err != nil {
			return nil, err
		}
	}
	pm, err := maps.Open(int(f.Fd()), nil)
	if err != nil {
		return nil, fmt.Errorf("map %d in the state directory: %w", o.objID, err)
	}
	return pm, nil
}

// copySparse copies the file behind fd into f, data extents only, keeping its size.
func copySparse(f *os.File, fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if err := f.Truncate(st.Size); err != nil {
		return err
	}
	buf := make([]byte, 1<<16)
	for off := int64(0); off < st.Size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			break // no data after off (ENXIO)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = st.Size
		}
		for p := data; p < hole; {
			n, err := unix.Pread(fd, buf[:min(int64(len(buf)), hole-p)], p)
			if err != nil || n == 0 {
				return fmt.Errorf("copying map memory: %v", err)
			}
			if _, err := f.WriteAt(buf[:n], p); err != nil {
				return err
			}
			p += int64(n)
		}
		off = hole
	}
	return nil
}

// btfOfFD returns the BTF object behind fd: EBADF when the fd is not open, EINVAL when it is not
// a BTF.
func (s *Server) btfOfFD(p Process, fd int32) (*btfObj, error) {
	obj, err := s.objs.lookupFD(p, fd)
	if err != nil {
		return nil, err
	}
	b, ok := obj.(*btfObj)
	if !ok {
		return nil, syscall.EINVAL
	}
	return b, nil
}

// checkMapBTF is the kernel's map_check_btf for the map types ebpfu has: the key and value types
// must exist and have the map's key and value sizes.
func checkMapBTF(b *btfObj, keyID, valueID, keySize, valueSize uint32) error {
	raw, err := b.raw()
	if err != nil {
		return err
	}
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
	if err != nil {
		return syscall.EINVAL
	}
	sizeOf := func(id uint32) (uint32, bool) {
		t, err := spec.TypeByID(btf.TypeID(id))
		if err != nil {
			return 0, false
		}
		n, err := btf.Sizeof(t)
		return uint32(n), err == nil
	}
	if keyID != 0 {
		if n, ok := sizeOf(keyID); !ok || n != keySize {
			return syscall.EINVAL
		}
	}
	if n, ok := sizeOf(valueID); !ok || n != valueSize {
		return syscall.EINVAL
	}
	return nil
}

// Element command attr fields (MAP_LOOKUP_ELEM, UPDATE, DELETE, GET_NEXT_KEY, LOOKUP_AND_DELETE).
const (
	elemMapFD = 0
	elemKey   = 8
	elemValue = 16 // next_key for GET_NEXT_KEY
	elemFlags = 24
	bpfFLock  = 4
)

// mapOfFD returns the map behind the caller's fd: EBADF when the fd is not open, EINVAL when it is
// not a map.
func (s *Server) mapOfFD(c *call, fd int32) (*mapObj, error) {
	obj, err := s.objs.lookupFD(c.p, fd)
	if err != nil {
		return nil, err
	}
	o, ok := obj.(*mapObj)
	if !ok {
		return nil, syscall.EINVAL
	}
	return o, nil
}

// readKey copies a map key from the caller, as __bpf_copy_key does: a map without keys takes
// none (EINVAL when one is passed).
func readKey(c *call, o *mapObj, addr uint64) ([]byte, error) {
	n := o.m.KeySize()
	if n == 0 {
		if addr != 0 {
			return nil, syscall.EINVAL
		}
		return nil, nil
	}
	key := make([]byte, n)
	if err := readUser(c.p, addr, key); err != nil {
		return nil, err
	}
	return key, nil
}

func (s *Server) mapLookup(c *call) (Result, error) {
	if c.attr.u64(elemFlags)&^bpfFLock != 0 {
		return Result{}, syscall.EINVAL
	}
	o, err := s.mapOfFD(c, c.attr.s32(elemMapFD))
	if err != nil {
		return Result{}, err
	}
	if c.attr.u64(elemFlags)&bpfFLock != 0 {
		return Result{}, syscall.EINVAL // no map here has a bpf_spin_lock
	}
	key, err := readKey(c, o, c.attr.u64(elemKey))
	if err != nil {
		return Result{}, err
	}
	value := make([]byte, o.m.SyscallValueSize())
	if err := o.m.Lookup(key, value, c.attr.u64(elemFlags)); err != nil {
		return Result{}, errnoOrEINVAL(err)
	}
	return Result{}, writeUser(c.p, c.attr.u64(elemValue), value)
}

func (s *Server) mapUpdate(c *call) (Result, error) {
	o, err := s.mapOfFD(c, c.attr.s32(elemMapFD))
	if err != nil {
		return Result{}, err
	}
	if o.m.Frozen() {
		return Result{}, syscall.EPERM
	}
	flags := c.attr.u64(elemFlags)
	if flags&bpfFLock != 0 {
		return Result{}, syscall.EINVAL
	}
	key, err := readKey(c, o, c.attr.u64(elemKey))
	if err != nil {
		return Result{}, err
	}
	value := make([]byte, o.m.SyscallValueSize())
	if err := readUser(c.p, c.attr.u64(elemValue), value); err != nil {
		return Result{}, err
	}
	if t := o.m.Type(); t == maps.PerfEventArray || t == maps.ProgArray || t == maps.CgroupArray {
		if err := o.m.CheckFdUpdate(key, flags); err != nil {
			return Result{}, errnoOrEINVAL(err)
		}
		ref, err := s.fdArrayRef(c, t, int32(le32At(value)))
		if err != nil {
			return Result{}, err
		}
		putLE32(value, ref)
	}
	return Result{}, errnoOrEINVAL(o.m.Update(key, value, flags))
}

// fdArrayRef translates the fd a caller stores in a PROG_ARRAY, PERF_EVENT_ARRAY or
// CGROUP_ARRAY into the id the map keeps.
func (s *Server) fdArrayRef(c *call, t maps.Type, fd int32) (uint32, error) {
	if t == maps.CgroupArray {
		return cgroupRef(c.p, fd)
	}
	obj, err := s.objs.lookupFD(c.p, fd)
	if err != nil {
		return 0, err
	}
	want := KindPerfEvent
	if t == maps.ProgArray {
		want = KindProg
	}
	if obj == nil || obj.kind() != want {
		if want == KindPerfEvent {
			return 0, syscall.EBADF // perf_event_get of a file that is no perf event
		}
		return 0, syscall.EINVAL
	}
	return obj.id(), nil
}

func (s *Server) mapDelete(c *call) (Result, error) {
	o, err := s.mapOfFD(c, c.attr.s32(elemMapFD))
	if err != nil {
		return Result{}, err
	}
	if o.m.Frozen() {
		return Result{}, syscall.EPERM
	}
	key, err := readKey(c, o, c.attr.u64(elemKey))
	if err != nil {
		return Result{}, err
	}
	return Result{}, errnoOrEINVAL(o.m.Delete(key))
}

func (s *Server) mapGetNextKey(c *call) (Result, error) {
	o, err := s.mapOfFD(c, c.attr.s32(elemMapFD))
	if err != nil {
		return Result{}, err
	}
	var key []byte
	if addr := c.attr.u64(elemKey); addr != 0 {
		if key, err = readKey(c, o, addr); err != nil {
			return Result{}, err
		}
	}
	next := make([]byte, o.m.KeySize())
	if err := o.m.NextKey(key, next); err != nil {
		return Result{}, errnoOrEINVAL(err)
	}
	return Result{}, writeUser(c.p, c.attr.u64(elemValue), next)
}

func (s *Server) mapLookupAndDelete(c *call) (Result, error) {
	if c.attr.u64(elemFlags)&^bpfFLock != 0 {
		return Result{}, syscall.EINVAL
	}
	o, err := s.mapOfFD(c, c.attr.s32(elemMapFD))
	if err != nil {
		return Result{}, err
	}
	if o.m.Frozen() {
		return Result{}, syscall.EPERM
	}
	if c.attr.u64(elemFlags)&bpfFLock != 0 {
		return Result{}, syscall.EINVAL
	}
	key, err := readKey(c, o, c.attr.u64(elemKey))
	if err != nil {
		return Result{}, err
	}
	value := make([]byte, o.m.SyscallValueSize())
	if err := o.m.LookupAndDelete(key, value, c.attr.u64(elemFlags)); err != nil {
		return Result{}, errnoOrEINVAL(err)
	}
	return Result{}, writeUser(c.p, c.attr.u64(elemValue), value)
}

func (s *Server) mapFreeze(c *call) (Result, error) {
	o, err := s.mapOfFD(c, c.attr.s32(elemMapFD))
	if err != nil {
		return Result{}, err
	}
	return Result{}, errnoOrEINVAL(o.m.Freeze())
}

// mapInfo is struct bpf_map_info (Linux 6.18).
type mapInfo struct {
	Type                  uint32
	ID                    uint32
	KeySize               uint32
	ValueSize             uint32
	MaxEntries            uint32
	MapFlags              uint32
	Name                  [objNameLen]byte
	Ifindex               uint32
	BTFVmlinuxValueTypeID uint32
	NetnsDev              uint64
	NetnsIno              uint64
	BTFID                 uint32
	BTFKeyTypeID          uint32
	BTFValueTypeID        uint32
	BTFVmlinuxID          uint32
	MapExtra              uint64
	Hash                  uint64
	HashSize              uint32
	_                     uint32
}

// mapGetInfo is the kernel's bpf_map_get_info_by_fd.
func (s *Server) mapGetInfo(c *call, o *mapObj, infoLen uint32, uinfo uint64) error {
	var info mapInfo
	n, err := readInfo(c.p, uinfo, infoLen, bytesOf(&info))
	if err != nil {
		return err
	}
	hash, hashSize := info.Hash, info.HashSize
	m := o.m
	info = mapInfo{
		Type: uint32(m.Type()), ID: o.objID, KeySize: m.KeySize(), ValueSize: m.ValueSize(),
		MaxEntries: m.MaxEntries(), MapFlags: m.Flags(), BTFVmlinuxValueTypeID: o.btfVmlinuxValueID,
		Hash: hash, HashSize: hashSize,
	}
	copy(info.Name[:], m.Name())
	if o.btf != nil {
		info.BTFID, info.BTFKeyTypeID, info.BTFValueTypeID = o.btf.objID, o.btfKey, o.btfValue
	}
	if hash != 0 || hashSize != 0 {
		return syscall.EINVAL // no map type here offers a hash
	}
	if err := writeUser(c.p, uinfo, bytesOf(&info)[:n]); err != nil {
		return err
	}
	return c.attr.put32(c.p, infoInfoLen, n)
}

// errnoOrEINVAL passes errnos through and turns other errors (which carry an errno when wrapped)
// into their errno, EINVAL when they have none.
func errnoOrEINVAL(err error) error {
	if err == nil {
		return nil
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EINVAL
}

func le32At(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func putLE32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// cgroupRef is what a CGROUP_ARRAY keeps of the caller's fd: the low 32 bits of the cgroup's id
// (its directory's inode on cgroup2), EBADF when the fd is not a cgroup2 directory.
func cgroupRef(p Process, fd int32) (uint32, error) {
	if fd < 0 {
		return 0, syscall.EBADF
	}
	path := "/proc/" + strconv.Itoa(p.PID()) + "/fd/" + strconv.Itoa(int(fd))
	var fs unix.Statfs_t
	var st unix.Stat_t
	if unix.Statfs(path, &fs) != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC || unix.Stat(path, &st) != nil {
		return 0, syscall.EBADF
	}
	return uint32(st.Ino), nil
}
