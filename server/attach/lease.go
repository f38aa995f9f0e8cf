package attach

import (
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/maps"
)

// LeaseCPU takes the lease of CPU slot cpu for a run of a server thread (an interval probe's),
// so that its per-CPU updates and the agents' runs on that slot never interleave. The calling
// goroutine must be locked to an OS thread bound to that CPU alone (sched_setaffinity): agents
// take a slot only in a restartable sequence on the slot's own CPU, which the kernel restarts
// when this thread preempts it, so a compare-and-swap made on that CPU excludes them. It waits
// (yielding, then sleeping) while a run holds the slot, takes back slots of dead holders, and
// gives up after timeout. tid is the calling thread's id; release frees the slot.
func (t *Table) LeaseCPU(cpu int, tid uint32, timeout time.Duration) (release func(), err error) {
	if cpu < 0 || cpu >= t.NumCPU() {
		return nil, fmt.Errorf("CPU %d: the table has %d slots", cpu, t.NumCPU())
	}
	w := t.p32(leasesOff + cpu*leaseSize)
	deadline := time.Now().Add(timeout)
	for tries := 0; ; tries++ {
		if atomic.CompareAndSwapUint32(w, 0, tid) {
			return func() { atomic.StoreUint32(w, 0) }, nil
		}
		if tries%64 == 63 {
			if owner := atomic.LoadUint32(w); owner != 0 && owner != tid && !maps.Alive(owner) {
				atomic.CompareAndSwapUint32(w, owner, 0)
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("CPU %d's slot stayed held for %v", cpu, timeout)
			}
		}
		if tries < 256 {
			unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0) // the holder may be on this CPU
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}
