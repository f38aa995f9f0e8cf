package server

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The user's live objects, shared by all the user's shims as the kernel's objects are shared by
// all processes: every map, program and BTF object has an entry STATE/live/KIND-ID, a hard link
// of the file that holds it (a map's shared memory; a program's instructions as a savedProg; a
// BTF blob), so any shim lists it (GET_NEXT_ID) and opens it by id (GET_FD_BY_ID).
//
// An object is alive while one of these holds:
//   - an fd of it is open somewhere (in any process of any shim): every file handed out carries
//     an OFD read lock on its first byte, which the kernel drops with the last reference to that
//     open file (its last fd and mapping), and which every shim can test with F_OFD_GETLK;
//   - a pin: a hard link of its file in the virtual bpffs;
//   - a holder: a program using a map or a BTF, a map using a BTF, kept as a hard link
//     STATE/live/hold.HELD.by.HOLDER of the held object's file.
//
// So liveness is what the kernel and the file system say, never a count that shims keep: a shim
// told by inotify that a file of an object was closed (or that its links changed) checks again,
// and under the user's live lock the shim that finds an object dead removes its entry and the
// holder links it made. Entries left by shims that were killed are swept by the next shim.

// liveNames are the names of the kinds that have live entries.
var liveNames = [numKinds]string{KindMap: "map", KindProg: "prog", KindLink: "link", KindBTF: "btf"}

// listed reports whether objects of kind k have live entries.
func listed(k Kind) bool { return k < numKinds && liveNames[k] != "" }

// liveName is the entry name of object kind k and id.
func liveName(k Kind, id uint32) string {
	return liveNames[k] + "-" + strconv.FormatUint(uint64(id), 10)
}

// parseLiveName parses an entry name.
func parseLiveName(name string) (Kind, uint32, bool) {
	ks, ids, ok := strings.Cut(name, "-")
	if !ok {
		return 0, 0, false
	}
	id, err := strconv.ParseUint(ids, 10, 32)
	if err != nil || id == 0 {
		return 0, 0, false
	}
	for k := range numKinds {
		if liveNames[k] != "" && liveNames[k] == ks {
			return k, uint32(id), true
		}
	}
	return 0, 0, false
}

// holdName is the name of the link by which holder keeps held alive.
func holdName(held, holder object) string {
	return "hold." + liveName(held.kind(), held.id()) + ".by." + liveName(holder.kind(), holder.id())
}

// livePath is where entry name lives.
func (u *userState) livePath(name string) string { return filepath.Join(u.dir, "live", name) }

// lockLive takes the user's live lock (an flock of STATE/live.lock), which orders the decisions
// that an object is dead against opening it by id in another shim; it returns the unlock.
func (u *userState) lockLive() (func(), error) {
	f, err := os.OpenFile(filepath.Join(u.dir, "live.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("live lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("live lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// holdLock puts the OFD read lock that marks f, a file handed out for an object, as an open
// reference of the object.
func holdLock(f *os.File) error {
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: 0, Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		return fmt.Errorf("marking a handed-out file: %w", err)
	}
	return nil
}

// fileAlive reports whether the object whose file is open at fd is alive: an open reference
// (another open file description holds a read lock) or more links than base (its live entry).
func fileAlive(fd int, base uint64) bool {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil && st.Nlink > base {
		return true
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 1}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
		return true // cannot tell: keep it
	}
	return lk.Type != unix.F_UNLCK
}

// entryAliveLocked reports whether the live entry name stands for a live object; the caller
// holds the live lock.
func (u *userState) entryAliveLocked(name string) bool {
	fd, err := unix.Open(u.livePath(name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return fileAlive(fd, 1)
}

// liveIDs returns the ids of kind's live entries, in order (dead ones included).
func (u *userState) liveIDs(kind Kind) []uint32 {
	ents, err := os.ReadDir(filepath.Join(u.dir, "live"))
	if err != nil {
		return nil
	}
	var ids []uint32
	for _, e := range ents {
		if k, id, ok := parseLiveName(e.Name()); ok && k == kind {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// sweepLocked removes the entries of dead objects and the holder links they made, repeatedly, since
// a holder's going may leave what it held dead, and the holder links whose holder has no entry.
// It returns the entries removed. The caller holds the live lock.
func (u *userState) sweepLocked() []string {
	var removed []string
	for {
		ents, err := os.ReadDir(filepath.Join(u.dir, "live"))
		if err != nil {
			return removed
		}
		entries := map[string]bool{}
		for _, e := range ents {
			if _, _, ok := parseLiveName(e.Name()); ok {
				entries[e.Name()] = true
			}
		}
		changed := false
		for name := range entries {
			if !u.entryAliveLocked(name) {
				u.dropEntryLocked(name)
				removed = append(removed, name)
				changed = true
			}
		}
		for _, e := range ents {
			if _, holder, ok := parseHoldName(e.Name()); ok && !entries[holder] {
				os.Remove(u.livePath(e.Name()))
				changed = true
			}
		}
		if !changed {
			return removed
		}
	}
}

// parseHoldName splits a holder link's name into the held and the holder entry names.
func parseHoldName(name string) (held, holder string, ok bool) {
	rest, ok := strings.CutPrefix(name, "hold.")
	if !ok {
		return "", "", false
	}
	held, holder, ok = strings.Cut(rest, ".by.")
	return held, holder, ok
}

// dropEntryLocked removes entry name and the holder links its object made; it returns the
// entries of the objects those links held.
func (u *userState) dropEntryLocked(name string) []string {
	os.Remove(u.livePath(name))
	ents, _ := os.ReadDir(filepath.Join(u.dir, "live"))
	var held []string
	for _, e := range ents {
		if h, holder, ok := parseHoldName(e.Name()); ok && holder == name {
			os.Remove(u.livePath(e.Name()))
			held = append(held, h)
		}
	}
	return held
}

// linkEntry makes the live entry of kind and id for the file open at fd.
func (u *userState) linkEntry(fd int, kind Kind, id uint32) error {
	if err := linkFD(fd, u.livePath(liveName(kind, id))); err != nil {
		return fmt.Errorf("live entry of %s %d: %w", kind, id, err)
	}
	return nil
}

// sameFile reports whether path is the file open at fd.
func sameFile(path string, fd int) bool {
	var a, b unix.Stat_t
	return unix.Stat(path, &a) == nil && unix.Fstat(fd, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino
}

// errDead answers a lookup by id of an object that no longer exists.
var errDead = syscall.ENOENT
