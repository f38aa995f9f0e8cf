package attach

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/jit"
)

// CodeFile puts compiled code in a new memfd, padded to whole pages, for agents to map
// read+execute (an ObjectCode object; the entry point is at c.Entry). The memfd lives on a
// memory file system whatever the mounts say, so it can be executed where /dev/shm is noexec.
func CodeFile(c *jit.Code) (*os.File, error) {
	fd, err := unix.MemfdCreate("ebpfu-code", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("code file: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ebpfu-code")
	text := make([]byte, (len(c.Text)+4095)&^4095)
	copy(text, c.Text)
	if _, err := f.Write(text); err != nil {
		f.Close()
		return nil, fmt.Errorf("code file: %w", err)
	}
	// nobody may change the code once agents run it
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("code file: %w", err)
	}
	return f, nil
}
