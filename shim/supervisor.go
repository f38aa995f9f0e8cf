package shim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/ebpfu/ebpfu/server"
	"golang.org/x/sys/unix"
)

// Config describes a supervised run of a tool.
type Config struct {
	// Argv is the tool and its arguments; Argv[0] is looked up in PATH.
	Argv []string
	// Self is the shim's executable, re-executed as the tool's init (os.Executable() if empty).
	// It must hand a run whose first argument is InitArg to Init.
	Self string
	// Server answers the tool's bpf(2) calls.
	Server *server.Server
	// Log receives one-line reports (os.Stderr if nil).
	Log io.Writer
	// Stdin, Stdout and Stderr are the tool's (the shim's own if nil).
	Stdin, Stdout, Stderr *os.File
	// Env is the tool's environment (the shim's own if nil). Init adds EBPFU_TOOL_PID, the
	// tool's pid, so that an agent preloaded through it stays out of the tool itself.
	Env []string
}

// Supervisor serves the notified syscalls of one tool and everything it starts.
type Supervisor struct {
	cfg     Config
	srv     *server.Server
	l       *listener
	table   *[maxNr]handler
	toolPid int
	epolls  map[epollKey]*epollReg // perf events in the tools' epoll sets
	tty     int                    // the terminal whose foreground the tool took, or -1
	caps    *caps                  // the tool's virtual capabilities

	// Notified counts the notifications served (for tests and benchmarks).
	notified atomic.Uint64
}

// Notified returns how many notifications the supervisor has served.
func (s *Supervisor) Notified() uint64 { return s.notified.Load() }

// Run starts the tool under a seccomp user-notification filter, serves its notified syscalls
// until it exits, and returns how it exited. SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to the
// shim (or its process group) are forwarded to the tool, which runs in a process group of its
// own and so receives each once.
func Run(cfg Config) (*os.ProcessState, error) {
	s, cmd, err := Start(cfg)
	if err != nil {
		return nil, err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case sig := <-sigs:
				cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	s.restoreTerminal()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return nil, err
	}
	return cmd.ProcessState, nil
}

// Start starts the tool under the filter and the supervisor's receive loop, and returns them;
// the caller waits for the command. The loop ends with the process.
func Start(cfg Config) (*Supervisor, *exec.Cmd, error) {
	if len(cfg.Argv) == 0 {
		return nil, nil, errors.New("no tool to run")
	}
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	if cfg.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, nil, fmt.Errorf("finding the shim's executable: %w", err)
		}
		cfg.Self = self
	}
	if err := checkNotifSizes(); err != nil {
		return nil, nil, err
	}
	path, err := exec.LookPath(cfg.Argv[0])
	if err != nil {
		return nil, nil, err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "ebpfu-supervisor")
	theirs := os.NewFile(uintptr(pair[1]), "ebpfu-init")
	defer ours.Close()
	cmd := exec.Command(cfg.Self, append([]string{InitArg, path}, cfg.Argv...)...)
	cmd.Args[0] = "ebpfu-shim"
	cmd.Env = cfg.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = orFile(cfg.Stdin, os.Stdin), orFile(cfg.Stdout, os.Stdout), orFile(cfg.Stderr, os.Stderr)
	cmd.ExtraFiles = []*os.File{theirs} // fd 3 = initSockFD
	// The tool gets a process group of its own, so a signal sent to the shim's group reaches it
	// once, forwarded; when the shim owns the terminal, the tool's group takes the foreground,
	// so the terminal's ^C reaches the tool alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	tty := -1
	if pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err == nil && pgrp == unix.Getpgrp() {
		tty = 0
		cmd.SysProcAttr.Foreground, cmd.SysProcAttr.Ctty = true, 0
	}
	if err := cmd.Start(); err != nil {
		theirs.Close()
		return nil, nil, fmt.Errorf("starting the tool's init: %w", err)
	}
	theirs.Close()
	lfd, err := receiveListener(pair[0])
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, nil, err
	}
	s := &Supervisor{cfg: cfg, srv: cfg.Server, l: &listener{fd: lfd}, table: dispatchTable(), toolPid: cmd.Process.Pid,
		epolls: map[epollKey]*epollReg{}, tty: tty, caps: newCaps()}
	if err := s.l.setSyncWakeUp(); err != nil {
		fmt.Fprintf(cfg.Log, "ebpfu-shim: SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: %v (serving without it)\n", err)
	}
	go s.serve()
	if _, err := unix.Write(pair[0], []byte{'G'}); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, nil, fmt.Errorf("releasing the tool: %w", err)
	}
	return s, cmd, nil
}

// serve is the receive loop: one notification at a time, on a thread of its own.
func (s *Supervisor) serve() {
	runtime.LockOSThread()
	var n notif
	for {
		if err := s.l.receive(&n); err != nil {
			if errors.Is(err, errGone) {
				continue
			}
			fmt.Fprintf(s.cfg.Log, "ebpfu-shim: %v\n", err)
			return
		}
		s.notified.Add(1)
		s.handle(&n)
	}
}

// handle answers one notification. A handler whose work may wait for traced processes (an
// attach or detach of a uprobe rings them) answers later, from a goroutine: the processes it
// waits for may be under this supervisor too, their agents' calls notified here.
func (s *Supervisor) handle(n *notif) {
	r := &Request{sup: s, id: n.ID, Tid: int(n.Pid), Nr: int(n.Data.Nr), Args: n.Data.Args}
	rep := s.call(r, func() reply { return s.table[r.Nr](s, r) })
	if rep.later != nil {
		go func() { s.finish(r, s.call(r, rep.later)) }()
		return
	}
	s.finish(r, rep)
}

// finish answers r with rep.
func (s *Supervisor) finish(r *Request, rep reply) {
	switch {
	case rep.drop:
	case rep.file != nil:
		_, err := s.l.addFD(r.id, int(rep.file.Fd()), rep.cloexec, true)
		rep.file.Close()
		if err != nil && !errors.Is(err, errGone) {
			var e syscall.Errno
			if !errors.As(err, &e) {
				e = syscall.EMFILE
			}
			s.l.respond(r.id, 0, e, false)
		}
	default:
		s.l.respond(r.id, rep.val, rep.errno, rep.cont)
	}
}

// call runs fn, the handler of r's syscall or its later part. A handler that panics answers
// EINVAL and reports it: bad input must never take the supervisor down.
func (s *Supervisor) call(r *Request, fn func() reply) (rep reply) {
	if r.Nr < 0 || r.Nr >= maxNr || s.table[r.Nr] == nil {
		return cont()
	}
	defer func() {
		if v := recover(); v != nil {
			fmt.Fprintf(s.cfg.Log, "ebpfu-shim: internal error serving %s: %v\n", syscallName(r.Nr), v)
			if rep.file != nil {
				rep.file.Close()
			}
			rep = errno(syscall.EINVAL)
		}
	}()
	return fn()
}

// isTool reports whether thread tid belongs to the tool's own process (not to a process the tool
// started).
func (s *Supervisor) isTool(tid int) bool {
	if tid == s.toolPid {
		return true
	}
	var st unix.Stat_t
	return unix.Stat("/proc/"+strconv.Itoa(s.toolPid)+"/task/"+strconv.Itoa(tid), &st) == nil
}

// restoreTerminal gives the terminal's foreground back to the shim's process group.
func (s *Supervisor) restoreTerminal() {
	if s.tty < 0 {
		return
	}
	signal.Ignore(syscall.SIGTTOU) // the shim's group is in the background until this is done
	unix.IoctlSetPointerInt(s.tty, unix.TIOCSPGRP, unix.Getpgrp())
	signal.Reset(syscall.SIGTTOU)
}

func itoa(n int) string { return strconv.Itoa(n) }

func orFile(f, def *os.File) *os.File {
	if f != nil {
		return f
	}
	return def
}
