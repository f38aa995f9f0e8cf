package shim

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// InitArg is the hidden first argument with which ebpfu-shim re-executes itself as the tool's
// init: `ebpfu-shim __ebpfu_init PATH ARGV...`. The command's main must hand such a run to Init.
const InitArg = "__ebpfu_init"

// initSockFD is the fd on which the init finds its end of the supervisor's socketpair.
const initSockFD = 3

// Init is the tool's init, run in the child between fork and exec. It installs the seccomp
// filter on its (locked) thread, hands the listener to the supervisor over SCM_RIGHTS, waits
// for the supervisor to be ready and execs the tool from the same thread, so the tool and
// everything it starts carry the filter. The tool's environment gets EBPFU_TOOL_PID: an agent
// preloaded through it (for the workloads the tool starts) leaves the tool itself alone. args are PATH followed by the tool's argv. Init
// returns only on failure, with the exit status to use.
func Init(args []string) int {
	runtime.LockOSThread()
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "ebpfu-shim: init needs a path and an argv")
		return 127
	}
	path, argv := args[0], args[1:]
	if err := initFilter(); err != nil {
		fmt.Fprintf(os.Stderr, "ebpfu-shim: %v\n", err)
		return 127
	}
	err := syscall.Exec(path, argv, toolEnv(os.Environ(), os.Getpid()))
	fmt.Fprintf(os.Stderr, "ebpfu-shim: %s: %v\n", argv[0], err)
	if errors.Is(err, syscall.ENOENT) {
		return 127
	}
	return 126
}

func initFilter() error {
	prog, err := buildFilter(filterRules())
	if err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	lfd, err := installFilter(prog)
	if err != nil {
		return err
	}
	rights := unix.UnixRights(lfd)
	if err := unix.Sendmsg(initSockFD, []byte{'L'}, rights, nil, 0); err != nil {
		return fmt.Errorf("sending the seccomp listener: %w", err)
	}
	unix.Close(lfd)
	// The supervisor answers once it listens; from then on the filtered calls of this thread
	// (and of the tool it becomes) are served.
	var ack [1]byte
	if n, err := unix.Read(initSockFD, ack[:]); err != nil || n != 1 {
		return fmt.Errorf("the supervisor did not take the listener (%d, %v)", n, err)
	}
	unix.Close(initSockFD)
	return nil
}

// receiveListener takes the listener fd the init sends over sock.
func receiveListener(sock int) (int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("receiving the seccomp listener: %w", err)
	}
	if n == 0 {
		return -1, errors.New("the tool's init ended before it sent the seccomp listener")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("receiving the seccomp listener: bad control message (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("receiving the seccomp listener: bad rights (%v)", err)
	}
	return fds[0], nil
}

// ToolPIDEnv names the tool's pid in its environment.
const ToolPIDEnv = "EBPFU_TOOL_PID"

// toolEnv returns env with ToolPIDEnv set to pid.
func toolEnv(env []string, pid int) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, ToolPIDEnv+"=") {
			out = append(out, kv)
		}
	}
	return append(out, ToolPIDEnv+"="+strconv.Itoa(pid))
}
