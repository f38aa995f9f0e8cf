package maps

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Owners. A lock word and a busy element record who holds them: a 32-bit owner id, never 0.
// A thread id (the C agent uses its gettid()) identifies one thread, and a lock found held by the
// caller's own id is a recursion (a program run from a signal handler that interrupted a helper),
// answered EBUSY as the kernel answers a recursive bucket lock. An id with SharedOwner set
// identifies a whole process (the Go server: goroutines are not threads) and is never taken for a
// recursion. Either way the low 31 bits are a pid or tid that Alive can check.
const SharedOwner = 0x80000000

// ProcessOwner returns the shared owner id of this process.
func ProcessOwner() uint32 { return SharedOwner | uint32(os.Getpid()) }

// Alive reports whether the thread or process named by owner still runs: /proc/ID/stat exists
// and its state is neither zombie nor dead. A killed process is dead for this test as soon as the
// kernel has released its memory, before its parent reaps it. Ids are read in this process's pid
// namespace.
func Alive(owner uint32) bool {
	id := owner &^ SharedOwner
	if id == 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(id), 10) + "/stat")
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ESRCH)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	switch b[i+2] {
	case 'Z', 'X', 'x':
		return false
	}
	return true
}

// Lock waiting: spin a little, then yield the CPU; check the holder's life every checkEvery
// yields.
const (
	spinTries  = 64
	checkEvery = 256
)

// lock takes the owner lock word at off for m.owner. When its holder died, it takes the lock
// over and returns the dead holder's id, so the caller can repair what the holder left half
// done; otherwise dead is 0. It fails with EBUSY on a recursion.
func (m *Map) lock(mem shm, off uint64) (dead uint32, err error) {
	return lockWord(mem, off, m.owner, m.alive)
}

func lockWord(mem shm, off uint64, owner uint32, alive func(uint32) bool) (dead uint32, err error) {
	for i := 0; ; i++ {
		if mem.cas32(off, 0, owner) {
			return 0, nil
		}
		cur := mem.load32(off)
		if cur == 0 {
			continue
		}
		if cur == owner && owner&SharedOwner == 0 {
			return 0, eBUSY
		}
		if i < spinTries {
			continue
		}
		if (i-spinTries)%checkEvery == checkEvery-1 && !alive(cur) {
			if mem.cas32(off, cur, owner) {
				return cur, nil
			}
		}
		unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	}
}

func (m *Map) unlock(mem shm, off uint64) { mem.store32(off, 0) }
