package server

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
