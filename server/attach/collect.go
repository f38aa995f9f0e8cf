package attach

import (
	"errors"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Collect removes what servers that are gone left in the table: objects whose holder no longer
// holds them (a server killed before it could remove them), and the attachments whose code is
// such an object or was removed. It returns the number of attachments removed; the caller then
// rings the agents so that they restore the code.
func (t *Table) Collect() int {
	n := 0
	t.locked(func() error {
		for i := range numObjs {
			e := objsOff + i*objSize
			if id := t.load32(e + objID); id == 0 || id == objDead {
				continue
			}
			if !held(int(t.load32(e+objPID)), int(t.load32(e+objFD)), t.load64(e+objIno)) {
				t.store32(e+objID, objDead)
			}
		}
		for i := range NumSlots {
			s := slotsOff + i*slotSize
			if t.load32(s+slotState) != 1 || t.findObject(ObjectCode, t.load32(s+slotCodeObj)) >= 0 {
				continue
			}
			t.clearSlot(s)
			n++
		}
		return nil
	})
	return n
}

// held reports whether process pid still holds the file of inode ino as fd (when it cannot be
// told, as it is another user's, it is taken as held).
func held(pid, fd int, ino uint64) bool {
	var st unix.Stat_t
	err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/fd/"+strconv.Itoa(fd), &st)
	switch {
	case err == nil:
		return st.Ino == ino
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return false
	}
	return true
}

// findObject returns the offset of the entry of object (kind, id), or -1.
func (t *Table) findObject(kind ObjectKind, id uint32) int {
	if id == 0 || id == objDead {
		return -1
	}
	for i := range numObjs {
		e := objsOff + int((uint64(id)+uint64(i))%numObjs)*objSize
		have := t.load32(e + objID)
		if have == id && ObjectKind(t.load32(e+objKind)) == kind {
			return e
		}
		if have == 0 {
			return -1
		}
	}
	return -1
}

// clearSlot removes the attachment in slot s (the table is locked).
func (t *Table) clearSlot(s int) {
	t.store64(dirOff+8*((s-slotsOff)/slotSize), 0)
	seq := t.load32(s + slotSeq)
	t.store32(s+slotSeq, seq|1)
	t.store32(s+slotState, 0)
	t.store32(s+slotSeq, seq+2)
	atomic.AddUint64(t.p64(hdrGen), 1)
}

// DeleteHeld forgets object o if the table still names o's holder for it (another server may
// have recorded the same object since, e.g. a pinned map it opened).
func (t *Table) DeleteHeld(o Object) {
	t.locked(func() error {
		if e := t.findObject(o.Kind, o.ID); e >= 0 && int(t.load32(e+objPID)) == o.PID && int(t.load32(e+objFD)) == o.FD {
			t.store32(e+objID, objDead)
		}
		return nil
	})
}

// Traced reports whether process pid runs the agent (it catches the doorbell signal), so that
// probes can apply to it.
func Traced(pid int) bool { return hasAgent(pid) }
