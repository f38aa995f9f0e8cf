package maps

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// Options are the caller's identity for the locks a map's operations take.
type Options struct {
	// Owner is the id written into lock words and busy elements (see SharedOwner); 0 means
	// ProcessOwner().
	Owner uint32
	// Alive tells whether an owner still runs, so a lock held by a killed process can be taken
	// over; nil means the package's Alive.
	Alive func(owner uint32) bool
}

// Map is one map: its memfd and this process's mapping of it. A Map is safe for concurrent use
// by many goroutines, and its memory by many processes.
type Map struct {
	fd    int
	mem   shm
	ctl   uint64 // offset of the control page
	owner uint32
	alive func(uint32) bool

	typ        Type
	keySize    uint32
	valueSize  uint32
	maxEntries uint32
	flags      uint32
	ncpu       uint32
	name       string
	seed       uint32
	l          layout

	slot   uint64 // round_up(value_size, 8): one value (one CPU's value for per-CPU maps)
	valOff uint64 // hash: offset of the value in an element
}

// Create makes a new map as spec says (after the kernel's checks, see Spec.Validate) in a new
// memfd. Errors from the checks are bare syscall.Errno values; others are wrapped.
func Create(spec *Spec, opts *Options) (*Map, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	ncpu := spec.NumCPU
	if ncpu == 0 {
		n, err := PossibleCPUs()
		if err != nil {
			return nil, fmt.Errorf("create map: %w", err)
		}
		ncpu = n
	}
	if ncpu < 1 || ncpu > 4096 {
		return nil, fmt.Errorf("create map: %d CPUs: %w", ncpu, eINVAL)
	}
	maxEntries := spec.effectiveMaxEntries(uint32(ncpu))
	l, err := computeLayout(spec.Type, spec.KeySize, spec.ValueSize, maxEntries, uint32(ncpu), 0)
	if err != nil {
		return nil, err
	}
	fd, err := newMemfd("ebpfu-map:"+spec.Name, l.fileSize)
	if err != nil {
		return nil, err
	}
	mem, err := mapFile(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	var seed uint32
	if spec.Flags&FlagZeroSeed == 0 && spec.Type.isHash() {
		var b [4]byte
		rand.Read(b[:])
		seed = binary.LittleEndian.Uint32(b[:])
	}
	c := l.fileSize - pageSize
	mem.store32(c+ctlVersionOff, layoutVersion)
	mem.store32(c+ctlTypeOff, uint32(spec.Type))
	mem.store32(c+ctlKeySizeOff, spec.KeySize)
	mem.store32(c+ctlValueSizeOff, spec.ValueSize)
	mem.store32(c+ctlMaxEntriesOff, maxEntries)
	mem.store32(c+ctlFlagsOff, spec.Flags)
	mem.store32(c+ctlNCPUOff, uint32(ncpu))
	mem.store32(c+ctlIDOff, spec.ID)
	copy(mem[c+ctlNameOff:c+ctlNameOff+objNameLen], spec.Name)
	mem.store32(c+ctlSeedOff, seed)
	writeLayout(mem, c, l)
	mem.store64(c+ctlMagicOff, ctlMagic)
	m, err := newMap(fd, mem, opts)
	if err != nil {
		unix.Munmap(mem)
		unix.Close(fd)
		return nil, err
	}
	return m, nil
}

func writeLayout(mem shm, c uint64, l layout) {
	mem.store32(c+ctlElemSizeOff, l.elemSize)
	mem.store32(c+ctlNBucketsOff, l.nBuckets)
	mem.store32(c+ctlNElemsOff, l.nElems)
	mem.store32(c+ctlNExtraOff, l.nExtra)
	mem.store64(c+ctlDataOffOff, l.dataOff)
	mem.store64(c+ctlDataSizeOff, l.dataSize)
	mem.store64(c+ctlBucketsOffOff, l.bucketsOff)
	mem.store64(c+ctlFileSizeOff, l.fileSize)
}

// Open maps the map held by the memfd fd (made by Create in this or another process). It keeps
// its own duplicate of fd; the caller still owns fd.
func Open(fd int, opts *Options) (*Map, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open map fd %d: %w", fd, err)
	}
	mem, err := mapFile(dup)
	if err != nil {
		unix.Close(dup)
		return nil, err
	}
	m, err := newMap(dup, mem, opts)
	if err != nil {
		unix.Munmap(mem)
		unix.Close(dup)
		return nil, fmt.Errorf("open map fd %d: %w", fd, err)
	}
	return m, nil
}

// newMap checks the control page of mem against the layout its parameters give and returns the
// Map.
func newMap(fd int, mem shm, opts *Options) (*Map, error) {
	c := uint64(len(mem)) - pageSize
	if mem.load64(c+ctlMagicOff) != ctlMagic || mem.load32(c+ctlVersionOff) != layoutVersion {
		return nil, fmt.Errorf("not an ebpfu map (bad magic or layout version): %w", eINVAL)
	}
	m := &Map{
		fd:         fd,
		mem:        mem,
		ctl:        c,
		typ:        Type(mem.load32(c + ctlTypeOff)),
		keySize:    mem.load32(c + ctlKeySizeOff),
		valueSize:  mem.load32(c + ctlValueSizeOff),
		maxEntries: mem.load32(c + ctlMaxEntriesOff),
		flags:      mem.load32(c + ctlFlagsOff),
		ncpu:       mem.load32(c + ctlNCPUOff),
		seed:       mem.load32(c + ctlSeedOff),
	}
	name := mem[c+ctlNameOff : c+ctlNameOff+objNameLen]
	for i, ch := range name {
		if ch == 0 {
			name = name[:i]
			break
		}
	}
	m.name = string(name)
	if m.ncpu == 0 || m.ncpu > 4096 {
		return nil, fmt.Errorf("map control page: %d CPUs: %w", m.ncpu, eINVAL)
	}
	var maxData uint64
	if m.typ == perfRingType {
		maxData = uint64(len(mem)) - 2*pageSize
	}
	l, err := computeLayout(m.typ, m.keySize, m.valueSize, m.maxEntries, m.ncpu, maxData)
	if err != nil {
		return nil, fmt.Errorf("map control page: %w", err)
	}
	if l.fileSize != uint64(len(mem)) || l.elemSize != mem.load32(c+ctlElemSizeOff) ||
		l.nBuckets != mem.load32(c+ctlNBucketsOff) || l.nElems != mem.load32(c+ctlNElemsOff) ||
		l.dataOff != mem.load64(c+ctlDataOffOff) || l.dataSize != mem.load64(c+ctlDataSizeOff) {
		return nil, fmt.Errorf("map control page disagrees with the layout of its parameters: %w", eINVAL)
	}
	m.l = l
	m.slot = roundUp8(uint64(m.valueSize))
	m.valOff = elemKeyOff + roundUp8(uint64(m.keySize))
	m.owner = ProcessOwner()
	m.alive = Alive
	if opts != nil {
		if opts.Owner != 0 {
			m.owner = opts.Owner
		}
		if opts.Alive != nil {
			m.alive = opts.Alive
		}
	}
	return m, nil
}

// Close unmaps the map and closes this Map's memfd. Addresses it returned become invalid.
func (m *Map) Close() error {
	err := unix.Munmap(m.mem)
	if cerr := unix.Close(m.fd); err == nil {
		err = cerr
	}
	m.mem = nil
	return err
}

// FD returns the map's memfd: what the server injects into the tool as the map fd, what agents
// map. The Map keeps owning it.
func (m *Map) FD() int { return m.fd }

// Type returns the map type.
func (m *Map) Type() Type { return m.typ }

// KeySize returns the key size.
func (m *Map) KeySize() uint32 { return m.keySize }

// ValueSize returns the value size (of one CPU's value for per-CPU maps).
func (m *Map) ValueSize() uint32 { return m.valueSize }

// MaxEntries returns max_entries as the kernel reports it after creation.
func (m *Map) MaxEntries() uint32 { return m.maxEntries }

// Flags returns the creation flags.
func (m *Map) Flags() uint32 { return m.flags }

// Name returns the map name.
func (m *Map) Name() string { return m.name }

// NumCPU returns the number of per-CPU slots of the layout.
func (m *Map) NumCPU() int { return int(m.ncpu) }

// MmapSize returns how many bytes from offset 0 of the memfd the tool may map: the value area of
// a BPF_F_MMAPABLE array; 0 for other maps (a ringbuf's pages are described by RingbufSize).
func (m *Map) MmapSize() uint64 {
	if m.typ == Array && m.flags&FlagMmapable != 0 {
		return m.l.dataSize
	}
	return 0
}

// Frozen reports whether MAP_FREEZE was done.
func (m *Map) Frozen() bool { return m.mem.load32(m.ctl+ctlFrozenOff) != 0 }

// Freeze marks the map frozen (BPF_MAP_FREEZE): the syscall side may no longer change it (the
// server answers EPERM to updates and deletes through any fd, as the kernel does), while
// programs still may. Freezing twice fails with EPERM (a frozen map's fds lose write
// permission, which the kernel checks first); every map type can be frozen, as in the kernel.
func (m *Map) Freeze() error {
	if !m.mem.cas32(m.ctl+ctlFrozenOff, 0, 1) {
		return ePERM
	}
	return nil
}

// checkKey returns EINVAL unless key has the map's key size.
func (m *Map) checkKey(key []byte) error {
	if uint32(len(key)) != m.keySize {
		return fmt.Errorf("key of %d bytes for key size %d: %w", len(key), m.keySize, eINVAL)
	}
	return nil
}

// checkValue returns EINVAL unless value has the syscall value size.
func (m *Map) checkValue(value []byte) error {
	if len(value) != m.SyscallValueSize() {
		return fmt.Errorf("value of %d bytes for value size %d: %w", len(value), m.SyscallValueSize(), eINVAL)
	}
	return nil
}
