package server

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// StateDir returns the per-user state directory of DESIGN.md section 5, creating it with mode
// 0700: $XDG_RUNTIME_DIR/ebpfu, else /dev/shm/ebpfu-UID with UID the user's id outside any user
// namespace it runs in (so a tool in an unprivileged container shares the state of its user).
// A directory that exists but is not the user's own, or is open to others, is refused.
func StateDir() (string, error) {
	var dir string
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		dir = filepath.Join(x, "ebpfu")
	} else {
		dir = fmt.Sprintf("/dev/shm/ebpfu-%d", outerUID())
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return "", fmt.Errorf("state directory: %w", err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// checkPrivateDir makes sure dir is a real directory of the calling user with mode 0700.
func checkPrivateDir(dir string) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return fmt.Errorf("state directory %s is not a directory", dir)
	}
	if int(st.Uid) != os.Getuid() {
		return fmt.Errorf("state directory %s belongs to uid %d, not to this user (%d)", dir, st.Uid, os.Getuid())
	}
	if st.Mode&0o077 != 0 {
		return fmt.Errorf("state directory %s is open to other users (mode %o); it must be 0700", dir, st.Mode&0o777)
	}
	return nil
}

// outerUID returns the caller's uid as the parent user namespace sees it (its own uid when it
// runs in the initial namespace or the map cannot be read).
func outerUID() int {
	uid := os.Getuid()
	f, err := os.Open("/proc/self/uid_map")
	if err != nil {
		return uid
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue
		}
		first, err1 := strconv.ParseUint(fields[0], 10, 32)
		lower, err2 := strconv.ParseUint(fields[1], 10, 32)
		count, err3 := strconv.ParseUint(fields[2], 10, 32)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if u := uint64(uid); u >= first && u-first < count {
			return int(lower + (u - first))
		}
	}
	return uid
}

// userState is the per-user shared state in the state directory: the files of the user's live
// objects (live.go), the id counters every shim of the user allocates from, so that ids are
// unique across shims as they are across the kernel, and the virtual bpffs (bpffs.go).
type userState struct {
	dir string
}

func newUserState(dir string) (*userState, error) {
	for _, sub := range []string{"objects", "ids", "live"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil && !os.IsExist(err) {
			return nil, fmt.Errorf("state directory: %w", err)
		}
	}
	return &userState{dir: dir}, nil
}

// objectFile returns a new unnamed file in the state directory (O_TMPFILE): it lives while a
// process holds it open or mapped, and for good once a pin links it into the virtual bpffs.
func (u *userState) objectFile() (*os.File, error) {
	fd, err := syscall.Open(filepath.Join(u.dir, "objects"), unix.O_TMPFILE|syscall.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("object file in the state directory: %w", err)
	}
	return os.NewFile(uintptr(fd), "ebpfu-object"), nil
}

// firstID is the first id each kind allocates: BTF id 1 is the kernel's vmlinux.
var firstID = [numKinds]uint32{KindMap: 1, KindProg: 1, KindLink: 1, KindBTF: kernelBTFID + 1, KindPerfEvent: 1}

// nextID returns the next id of kind from the user's counter (cyclic in [first, INT_MAX), as
// the kernel's idr_alloc_cyclic), under an exclusive lock of the counter file.
func (u *userState) nextID(kind Kind) (uint32, error) {
	f, err := os.OpenFile(filepath.Join(u.dir, "ids", kind.String()), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, fmt.Errorf("id counter: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return 0, fmt.Errorf("id counter: %w", err)
	}
	b := make([]byte, 16)
	n, _ := f.ReadAt(b, 0)
	id64, err := strconv.ParseUint(strings.TrimSpace(string(b[:n])), 10, 32)
	id := uint32(id64)
	if err != nil || id < firstID[kind] || id >= maxID {
		id = firstID[kind]
	}
	if err := f.Truncate(0); err != nil {
		return 0, fmt.Errorf("id counter: %w", err)
	}
	if _, err := f.WriteAt([]byte(strconv.FormatUint(uint64(id)+1, 10)), 0); err != nil {
		return 0, fmt.Errorf("id counter: %w", err)
	}
	return id, nil
}

// Extended attributes that name the object a state file (a map's memory, a pin) stands for.
const (
	xattrKind = "user.ebpfu.kind"
	xattrID   = "user.ebpfu.id"
)

// tagObject records kind and id on the file open at fd.
func tagObject(fd int, kind Kind, id uint32) error {
	if err := unix.Fsetxattr(fd, xattrKind, []byte(kind.String()), 0); err != nil {
		return fmt.Errorf("tagging a state file (user xattrs needed): %w", err)
	}
	return unix.Fsetxattr(fd, xattrID, []byte(strconv.FormatUint(uint64(id), 10)), 0)
}

// objectTag reads the kind and id recorded on the file at path.
func objectTag(path string) (Kind, uint32, bool) {
	b := make([]byte, 32)
	n, err := unix.Getxattr(path, xattrKind, b)
	if err != nil {
		return 0, 0, false
	}
	kind := Kind(0)
	for k := KindMap; k < numKinds; k++ {
		if anonName[k] == string(b[:n]) {
			kind = k
		}
	}
	n, err = unix.Getxattr(path, xattrID, b)
	if err != nil || kind == 0 {
		return 0, 0, false
	}
	id, err := strconv.ParseUint(string(b[:n]), 10, 32)
	if err != nil {
		return 0, 0, false
	}
	return kind, uint32(id), true
}
