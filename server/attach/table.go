package attach

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/maps"
)

// The table's layout; cshim/attach.h holds the same offsets (docs/probes.md).
const (
	tableFile    = "attach"
	procsDir     = "procs"
	tableMagic   = 0x3174746175706265 // "ebpuatt1"
	tableVersion = 1

	hdrMagic   = 0x00
	hdrVersion = 0x08
	hdrNSlots  = 0x0c
	hdrNObjs   = 0x10
	hdrNCPU    = 0x14
	hdrGen     = 0x18
	hdrBudget  = 0x20
	hdrNextID  = 0x28

	dirOff     = 0x800
	statusOff  = 0x1000
	statusSize = 64
	leasesOff  = 0x8000
	leaseSize  = 64
	// MaxCPUs bounds the CPUs programs may see (per-CPU slots leased by runs).
	MaxCPUs  = 512
	objsOff  = 0x10000
	objSize  = 32
	slotsOff = 0x40000
	slotSize = 4096
	// NumSlots is the number of attachments the table holds.
	NumSlots = 256
	numObjs  = 4096
	fileSize = slotsOff + NumSlots*slotSize

	objID   = 0x00
	objKind = 0x04
	objPID  = 0x08
	objFD   = 0x0c
	objIno  = 0x10
	objSz   = 0x18
	objDead = 0xffffffff

	slotSeq       = 0x000
	slotState     = 0x004
	slotID        = 0x008
	slotFlags     = 0x010
	slotProgID    = 0x014
	slotDevMajor  = 0x018
	slotDevMinor  = 0x01c
	slotIno       = 0x020
	slotOffset    = 0x028
	slotCookie    = 0x030
	slotDispLen   = 0x038
	slotCopyLen   = 0x03c
	slotNFix      = 0x040
	slotNBound    = 0x044
	slotCodeObj   = 0x048
	slotCodeEntry = 0x04c
	slotNMaps     = 0x050
	slotPID       = 0x054
	slotRefCtr    = 0x058
	slotOrig      = 0x060
	slotCopy      = 0x080
	slotFixups    = 0x100
	slotBounds    = 0x200
	slotMapIDs    = 0x220
	slotPath      = 0x400

	statusNApplied = 0x00
	statusNErr     = 0x04
	statusErrPID   = 0x08
	statusErr      = 0x0c
	statusErrLen   = 52

	flagRetprobe  = 1
	flagFuncEntry = 2
	flagInt3      = 4 // the point is patched with int3: the displaced length is one instruction's

	// MaxMaps is the number of maps one attached program may use.
	MaxMaps = 64
	maxPath = 1023
)

// DoorbellSignal is the real-time signal (SIGRTMAX-6) that tells an agent to apply the table.
// A server's ring carries DoorbellValue in si_value (sigqueue); the agent passes any other
// arrival of the signal to the host's own handler.
const (
	DoorbellSignal = 58
	DoorbellValue  = 0x65627066
)

// ObjectKind is what an object of the table holds, which decides how agents map it.
type ObjectKind uint32

// Object kinds.
const (
	ObjectMap  ObjectKind = 1 // a map in the runtime/maps layout, mapped read-write
	ObjectCode ObjectKind = 2 // JIT output, mapped read+execute
	ObjectRing ObjectKind = 3 // a perf event ring, mapped read-write
)

// Object tells agents where to find an object's memory: file descriptor FD of process PID (a
// memfd or unnamed state file that process holds open), whose inode is Ino; Size bytes from
// offset 0 are mapped. Kind and ID name it together: maps, programs (their code) and perf rings
// keep the server's id spaces, one per kind.
type Object struct {
	ID   uint32
	Kind ObjectKind
	PID  int
	FD   int
	Ino  uint64
	Size uint64
}

// ObjectOf describes the file fd of this process as object id of kind.
func ObjectOf(id uint32, kind ObjectKind, fd int) (Object, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Object{}, fmt.Errorf("object %d: %w", id, err)
	}
	return Object{ID: id, Kind: kind, PID: os.Getpid(), FD: fd, Ino: st.Ino, Size: uint64(st.Size)}, nil
}

// Probe is one attachment: a program on a probe point.
type Probe struct {
	Point  *Point
	Return bool   // a uretprobe
	Cookie uint64 // bpf_get_attach_cookie
	ProgID uint32
	// Code is the object id of the program's JIT output and Entry the offset of its entry.
	Code  uint32
	Entry uint32
	// Maps holds the object id of each map of the program, by map index (program.Program.Maps).
	Maps []uint32
	// PID limits the probe to one process (perf_event_open's pid); 0 means every process that
	// maps the file, as the kernel's -1.
	PID int
	// RefCtr is the file offset of the probe's reference counter (a USDT semaphore:
	// perf_event_open's config bits 32-63), 0 when none: each process the probe applies to
	// increments the 16-bit counter there while the probe is attached, as the kernel does.
	RefCtr uint64
}

// Table is the per-user attachments table (docs/probes.md) as a server writes it. Writers
// serialize on an exclusive lock of the file; agents read slots under their sequence numbers.
type Table struct {
	dir string
	f   *os.File
	mem []byte
}

// TableOptions are the parameters a new table gets. A table that exists keeps its own.
type TableOptions struct {
	// NumCPU is the number of CPUs programs see (bpf_get_smp_processor_id, per-CPU slots);
	// 0 means the machine's possible CPUs.
	NumCPU int
	// Budget is the instruction budget of each probe run; 0 means none.
	Budget uint64
}

// OpenTable opens the table in the state directory dir, creating it when it is missing.
func OpenTable(dir string, opts *TableOptions) (*Table, error) {
	if err := os.MkdirAll(filepath.Join(dir, procsDir), 0o700); err != nil {
		return nil, fmt.Errorf("attachments table: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, tableFile), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("attachments table: %w", err)
	}
	t := &Table{dir: dir, f: f}
	err = t.locked(func() error {
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if st.Size() < fileSize {
			if err := f.Truncate(fileSize); err != nil {
				return err
			}
		}
		t.mem, err = unix.Mmap(int(f.Fd()), 0, fileSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return err
		}
		if t.load64(hdrMagic) == 0 {
			ncpu := 0
			if opts != nil {
				ncpu = opts.NumCPU
			}
			if ncpu == 0 {
				if ncpu, err = maps.PossibleCPUs(); err != nil {
					return err
				}
			}
			if ncpu < 1 || ncpu > MaxCPUs {
				return fmt.Errorf("%d CPUs: at most %d", ncpu, MaxCPUs)
			}
			t.store32(hdrVersion, tableVersion)
			t.store32(hdrNSlots, NumSlots)
			t.store32(hdrNObjs, numObjs)
			t.store32(hdrNCPU, uint32(ncpu))
			if opts != nil {
				t.store64(hdrBudget, opts.Budget)
			}
			t.store64(hdrMagic, tableMagic)
		}
		if t.load64(hdrMagic) != tableMagic || t.load32(hdrVersion) != tableVersion ||
			t.load32(hdrNSlots) != NumSlots || t.load32(hdrNObjs) != numObjs {
			return errors.New("not an attachments table of this version")
		}
		return nil
	})
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("attachments table %s: %w", filepath.Join(dir, tableFile), err)
	}
	return t, nil
}

// Close unmaps the table.
func (t *Table) Close() error {
	if t.mem != nil {
		unix.Munmap(t.mem)
		t.mem = nil
	}
	return t.f.Close()
}

// NumCPU returns the number of CPUs programs see.
func (t *Table) NumCPU() int { return int(t.load32(hdrNCPU)) }

// Gen returns the table's generation, bumped by every change of attachments.
func (t *Table) Gen() uint64 { return t.load64(hdrGen) }

func (t *Table) locked(fn func() error) error {
	if err := unix.Flock(int(t.f.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	defer unix.Flock(int(t.f.Fd()), unix.LOCK_UN)
	return fn()
}

func (t *Table) p32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&t.mem[off])) }
func (t *Table) p64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&t.mem[off])) }
func (t *Table) load32(off int) uint32 {
	return atomic.LoadUint32(t.p32(off))
}
func (t *Table) load64(off int) uint64 {
	return atomic.LoadUint64(t.p64(off))
}
func (t *Table) store32(off int, v uint32) { atomic.StoreUint32(t.p32(off), v) }
func (t *Table) store64(off int, v uint64) { atomic.StoreUint64(t.p64(off), v) }

// PutObject records (or updates) where agents find object o.
func (t *Table) PutObject(o Object) error {
	if o.ID == 0 || o.ID == objDead || o.Size == 0 || o.Size%4096 != 0 {
		return fmt.Errorf("object %d of %d bytes: %w", o.ID, o.Size, syscall.EINVAL)
	}
	return t.locked(func() error {
		free := -1
		for i := range numObjs {
			e := objsOff + int((uint64(o.ID)+uint64(i))%numObjs)*objSize
			id := t.load32(e + objID)
			if id == o.ID && ObjectKind(t.load32(e+objKind)) == o.Kind {
				free = e
				break
			}
			if id == objDead && free < 0 {
				free = e
			}
			if id == 0 {
				if free < 0 {
					free = e
				}
				break
			}
		}
		if free < 0 {
			return fmt.Errorf("object %d: the table's %d objects are in use: %w", o.ID, numObjs, syscall.ENOSPC)
		}
		t.store32(free+objID, objDead) // agents skip it while it changes
		t.store32(free+objKind, uint32(o.Kind))
		t.store32(free+objPID, uint32(o.PID))
		t.store32(free+objFD, uint32(o.FD))
		t.store64(free+objIno, o.Ino)
		t.store64(free+objSz, o.Size)
		t.store32(free+objID, o.ID)
		return nil
	})
}

// DeleteObject forgets object (kind, id). Agents that mapped it keep their mapping.
func (t *Table) DeleteObject(kind ObjectKind, id uint32) {
	t.locked(func() error {
		for i := range numObjs {
			e := objsOff + int((uint64(id)+uint64(i))%numObjs)*objSize
			have := t.load32(e + objID)
			if have == id && ObjectKind(t.load32(e+objKind)) == kind {
				t.store32(e+objID, objDead)
				return nil
			}
			if have == 0 {
				return nil
			}
		}
		return nil
	})
}

// Attach records an attachment and returns its id. Agents apply it when the doorbell rings
// (Ring).
func (t *Table) Attach(p *Probe) (uint64, error) {
	pt := p.Point
	if pt == nil || pt.Displaced == nil {
		return 0, fmt.Errorf("attach: no resolved probe point")
	}
	if len(p.Maps) > MaxMaps {
		return 0, fmt.Errorf("attach: a program with %d maps (at most %d)", len(p.Maps), MaxMaps)
	}
	if len(pt.Path) > maxPath {
		return 0, fmt.Errorf("attach: path of %d bytes", len(pt.Path))
	}
	d := pt.Displaced
	var id uint64
	err := t.locked(func() error {
		slot := -1
		for i := range NumSlots {
			if t.load32(slotsOff+i*slotSize+slotState) == 0 {
				slot = slotsOff + i*slotSize
				break
			}
		}
		if slot < 0 {
			return fmt.Errorf("attach: all %d attachments are in use: %w", NumSlots, syscall.ENOSPC)
		}
		id = t.load64(hdrNextID) + 1
		t.store64(hdrNextID, id)
		seq := t.load32(slot + slotSeq)
		t.store32(slot+slotSeq, seq|1)
		s := t.mem[slot : slot+slotSize]
		clear(s[slotState+4:]) // everything but the sequence and the state
		le := binary.LittleEndian
		le.PutUint64(s[slotID:], id)
		flags := uint32(0)
		if p.Return {
			flags |= flagRetprobe
		}
		if pt.FuncEntry {
			flags |= flagFuncEntry
		}
		if pt.Int3 {
			flags |= flagInt3
		}
		le.PutUint32(s[slotFlags:], flags)
		le.PutUint32(s[slotProgID:], p.ProgID)
		le.PutUint32(s[slotDevMajor:], pt.Major)
		le.PutUint32(s[slotDevMinor:], pt.Minor)
		le.PutUint64(s[slotIno:], pt.Ino)
		le.PutUint64(s[slotOffset:], pt.Offset)
		le.PutUint64(s[slotCookie:], p.Cookie)
		le.PutUint32(s[slotDispLen:], uint32(len(d.Orig)))
		le.PutUint32(s[slotCopyLen:], uint32(len(d.Copy)))
		le.PutUint32(s[slotNFix:], uint32(len(d.Fixups)))
		le.PutUint32(s[slotNBound:], uint32(len(d.Bounds)))
		le.PutUint32(s[slotCodeObj:], p.Code)
		le.PutUint32(s[slotCodeEntry:], p.Entry)
		le.PutUint32(s[slotNMaps:], uint32(len(p.Maps)))
		le.PutUint32(s[slotPID:], uint32(p.PID))
		le.PutUint64(s[slotRefCtr:], p.RefCtr)
		copy(s[slotOrig:], d.Orig)
		copy(s[slotCopy:], d.Copy)
		for i, f := range d.Fixups {
			b := s[slotFixups+16*i:]
			le.PutUint16(b, f.At)
			le.PutUint16(b[2:], f.End)
			le.PutUint32(b[4:], uint32(f.Kind))
			le.PutUint64(b[8:], uint64(f.Target))
		}
		for i, b := range d.Bounds {
			s[slotBounds+2*i] = b.Orig
			s[slotBounds+2*i+1] = b.Copy
		}
		for i, m := range p.Maps {
			le.PutUint32(s[slotMapIDs+4*i:], m)
		}
		copy(s[slotPath:slotPath+maxPath], pt.Path)
		t.store32(slot+slotState, 1)
		t.store32(slot+slotSeq, seq+2)
		st := statusOff + statusSize*((slot-slotsOff)/slotSize)
		clear(t.mem[st : st+statusSize])
		t.store64(dirOff+8*((slot-slotsOff)/slotSize), id)
		atomic.AddUint64(t.p64(hdrGen), 1)
		return nil
	})
	return id, err
}

// Detach removes attachment id. Agents restore the code when the doorbell rings (Ring).
func (t *Table) Detach(id uint64) error {
	return t.locked(func() error {
		slot := t.find(id)
		if slot < 0 {
			return fmt.Errorf("detach %d: no such attachment: %w", id, syscall.ENOENT)
		}
		t.clearSlot(slot)
		return nil
	})
}

func (t *Table) find(id uint64) int {
	for i := range NumSlots {
		s := slotsOff + i*slotSize
		if t.load32(s+slotState) == 1 && t.load64(s+slotID) == id {
			return s
		}
	}
	return -1
}

// Status is what agents reported about one attachment.
type Status struct {
	// Applied counts the processes that patched it in (never decreases).
	Applied uint32
	// Failed counts the processes that could not; LastError says why, for process ErrPID.
	Failed    uint32
	ErrPID    int
	LastError string
}

// Status returns what agents reported about attachment id.
func (t *Table) Status(id uint64) (Status, bool) {
	s := t.find(id)
	if s < 0 {
		return Status{}, false
	}
	s = statusOff + statusSize*((s-slotsOff)/slotSize)
	msg := t.mem[s+statusErr : s+statusErr+statusErrLen]
	for i, c := range msg {
		if c == 0 {
			msg = msg[:i]
			break
		}
	}
	return Status{
		Applied:   t.load32(s + statusNApplied),
		Failed:    t.load32(s + statusNErr),
		ErrPID:    int(t.load32(s + statusErrPID)),
		LastError: string(msg),
	}, true
}
