// Package server is ebpfu's bpf(2) object model: it answers the bpf(2) commands of a tool (maps,
// programs, links, BTF, pins, ids, object info) from user space, with the kernel's attr rules
// and errno values, on objects that live in the server and in per-user shared state.
//
// The server sees a caller only through Process (its memory and fds); shim/ connects it to
// the seccomp notifications of a supervised tool. Every fd the server hands out is a file of
// its own, recognised later by its inode; the server learns from inotify when the last fd of a
// file is closed, and frees objects as the kernel does.
package server

import (
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"github.com/ebpfu/ebpfu/server/tracefs"
)

// Config says where a server keeps its state and reports.
type Config struct {
	// StateDir is the per-user state directory (DESIGN.md section 5); StateDir() by default.
	StateDir string
	// KernelBTF is the path of the kernel's BTF, served as BTF object 1;
	// /sys/kernel/btf/vmlinux by default.
	KernelBTF string
	// Log receives one-line reports of what the server refused for want of support;
	// os.Stderr by default.
	Log io.Writer
}

// Server serves the bpf(2) calls of the processes of one supervised tool.
type Server struct {
	mu    sync.Mutex
	log   io.Writer
	objs  registry
	bpffs *bpffs
	tfs   *tracefs.FS
	// probes is the server's part of the probe path (probes.go).
	probes probes

	logMu  sync.Mutex
	logged map[string]bool // lines already reported
}

// New returns a server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	if cfg.KernelBTF == "" {
		cfg.KernelBTF = "/sys/kernel/btf/vmlinux"
	}
	if cfg.StateDir == "" {
		dir, err := StateDir()
		if err != nil {
			return nil, err
		}
		cfg.StateDir = dir
	}
	fs, err := newBPFFS(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	state, err := newUserState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	s := &Server{log: cfg.Log, bpffs: fs, tfs: tracefs.Open(cfg.StateDir)}
	s.objs.state = state
	if err := s.startCloseWatch(); err != nil {
		return nil, err
	}
	kb := kernelBTF(cfg.KernelBTF)
	if kb.home, err = state.objectFile(); err != nil {
		s.objs.watch.file.Close()
		return nil, err
	}
	s.objs.ids[KindBTF].reserve(kb)
	if err := s.objs.register(kb); err != nil {
		s.objs.watch.file.Close()
		return nil, err
	}
	s.mu.Lock()
	s.sweep() // what shims that were killed left behind
	s.mu.Unlock()
	return s, nil
}

// Close ends the server: it frees what nothing keeps any more (its tool is gone, but the close
// watch may not have told yet), stops watching and releases its files. Objects that are still
// kept (pinned, or held open by a process outside the tool) live on in the state directory.
func (s *Server) Close() error {
	s.closeProbes()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range numKinds {
		for _, obj := range s.objs.ids[k].objs {
			s.maybeFree(obj)
		}
	}
	if s.objs.watch != nil {
		s.objs.watch.file.Close()
		s.objs.watch = nil
	}
	for k := range numKinds {
		for _, obj := range s.objs.ids[k].objs {
			s.forget(obj)
		}
	}
	return nil
}

// Tracefs returns the tracing file system the server's tools see.
func (s *Server) Tracefs() *tracefs.FS { return s.tfs }

// logf reports one line on the server's log, once: a tool that retries (libbpf's fallbacks,
// feature probes) gets each reason a single time.
func (s *Server) logf(format string, args ...any) {
	line := fmt.Sprintf("ebpfu-shim: "+format+"\n", args...)
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if s.logged[line] {
		return
	}
	if s.logged == nil {
		s.logged = map[string]bool{}
	}
	s.logged[line] = true
	io.WriteString(s.log, line)
}

// call is one bpf(2) call being served.
type call struct {
	p    Process
	cmd  uint32
	name string // the command's kernel name
	attr *attr
}

// BPF serves bpf(cmd, attr, size) for p.
func (s *Server) BPF(p Process, cmd uint32, attrAddr uint64, size uint32) (Result, error) {
	a, err := readAttr(p, attrAddr, size)
	if err != nil {
		return Result{}, err
	}
	if cmd >= uint32(len(commands)) || commands[cmd].run == nil {
		return Result{}, syscall.EINVAL
	}
	c := &commands[cmd]
	if !a.unusedZero(c.last) {
		return Result{}, syscall.EINVAL
	}
	res, err := func() (Result, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return c.run(s, &call{p: p, cmd: cmd, name: c.name, attr: a})
	}()
	s.ringProbes() // an attach or detach of a uprobe (links) is in place when the call returns
	return res, err
}

// notSupported answers a command the server does not serve yet: EINVAL, as a kernel without
// it would, and one line on the log so a user knows why the tool failed.
func notSupported(s *Server, c *call) (Result, error) {
	s.logf("bpf(%s) is not supported yet", c.name)
	return Result{}, syscall.EINVAL
}

// writeUser copies b to the caller at addr, with EFAULT for ranges outside user space.
func writeUser(p Process, addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if addr == 0 || !accessOK(addr, uint64(len(b))) {
		return syscall.EFAULT
	}
	return p.WriteMem(addr, b)
}

// readUser copies len(b) bytes from the caller at addr, with EFAULT for ranges outside user
// space.
func readUser(p Process, addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if addr == 0 || !accessOK(addr, uint64(len(b))) {
		return syscall.EFAULT
	}
	return p.ReadMem(addr, b)
}

// readInfo reads the caller's info struct for OBJ_GET_INFO_BY_FD into info as the kernel does:
// a larger struct than the kernel's must end in zeros (E2BIG), and min(infoLen, len(info))
// bytes are copied, which is also how many are copied back.
func readInfo(p Process, uinfo uint64, infoLen uint32, info []byte) (uint32, error) {
	if infoLen > pageSize {
		return 0, syscall.E2BIG
	}
	if !accessOK(uinfo, uint64(infoLen)) {
		return 0, syscall.EFAULT
	}
	if int(infoLen) > len(info) {
		if err := tailZero(p, uinfo+uint64(len(info)), uint64(int(infoLen)-len(info))); err != nil {
			return 0, err
		}
	}
	n := min(infoLen, uint32(len(info)))
	if err := readUser(p, uinfo, info[:n]); err != nil {
		return 0, err
	}
	return n, nil
}

// bytesOf views a fixed-size value as bytes, for kernel structures copied to and from callers.
func bytesOf[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}
