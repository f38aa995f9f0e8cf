package shim

import (
	"golang.org/x/sys/unix"
)

// handler serves one notified syscall.
type handler func(s *Supervisor, r *Request) reply

// entry is a syscall the supervisor serves: when the filter notifies it and who answers.
type entry struct {
	name  string
	conds []cond // all must hold for the filter to notify; none means always
	serve handler
}

// perfIoctlCond selects the perf_event ioctls ('$' << 8): the filter notifies only those, so
// the countless tty and socket ioctls of a workload never reach the supervisor.
var perfIoctlCond = []cond{{Arg: 1, Mask: 0xff00, Value: 0x2400}}

// sharedFileMmapConds selects shared mappings of files (MAP_SHARED or MAP_SHARED_VALIDATE, fd not
// -1), where perf rings are mapped; the many private and anonymous mappings of every process
// never reach the supervisor.
var sharedFileMmapConds = []cond{{Arg: 3, Mask: unix.MAP_SHARED, Value: unix.MAP_SHARED}, {Arg: 4, Mask: 0xffffffff, Value: 0xffffffff, Not: true}}

// syscalls is the supervisor's dispatch table: every syscall the filter notifies, with the
// handler that answers it. Keep it small: each notified call costs every process under the
// shim a round trip to the supervisor.
var syscalls = map[uint32]entry{
	unix.SYS_BPF:             {name: "bpf", serve: (*Supervisor).sysBPF},
	unix.SYS_PERF_EVENT_OPEN: {name: "perf_event_open", serve: (*Supervisor).sysPerfEventOpen},
	unix.SYS_IOCTL:           {name: "ioctl", conds: perfIoctlCond, serve: (*Supervisor).sysIoctl},
	unix.SYS_MMAP:            {name: "mmap", conds: sharedFileMmapConds, serve: (*Supervisor).sysMmap},
	unix.SYS_EPOLL_CTL:       {name: "epoll_ctl", serve: (*Supervisor).sysEpollCtl},

	// The tool's own process is root; the workloads it starts see their real ids.
	unix.SYS_GETUID:    {name: "getuid", serve: (*Supervisor).sysRootID},
	unix.SYS_GETEUID:   {name: "geteuid", serve: (*Supervisor).sysRootID},
	unix.SYS_GETGID:    {name: "getgid", serve: (*Supervisor).sysRootID},
	unix.SYS_GETEGID:   {name: "getegid", serve: (*Supervisor).sysRootID},
	unix.SYS_GETRESUID: {name: "getresuid", serve: (*Supervisor).sysGetres},
	unix.SYS_GETRESGID: {name: "getresgid", serve: (*Supervisor).sysGetres},
	unix.SYS_CAPGET:    {name: "capget", serve: (*Supervisor).sysCapget},
	unix.SYS_CAPSET:    {name: "capset", serve: (*Supervisor).sysCapset},

	// Paths the tools expect the kernel to answer: the virtual bpffs, /proc's view of our fds.
	unix.SYS_OPEN:       {name: "open", serve: (*Supervisor).sysPath},
	unix.SYS_OPENAT:     {name: "openat", serve: (*Supervisor).sysPath},
	unix.SYS_OPENAT2:    {name: "openat2", serve: (*Supervisor).sysPath},
	unix.SYS_READLINK:   {name: "readlink", serve: (*Supervisor).sysPath},
	unix.SYS_READLINKAT: {name: "readlinkat", serve: (*Supervisor).sysPath},
	unix.SYS_STAT:       {name: "stat", serve: (*Supervisor).sysPath},
	unix.SYS_LSTAT:      {name: "lstat", serve: (*Supervisor).sysPath},
	unix.SYS_NEWFSTATAT: {name: "newfstatat", serve: (*Supervisor).sysPath},
	unix.SYS_STATX:      {name: "statx", serve: (*Supervisor).sysPath},
	unix.SYS_STATFS:     {name: "statfs", serve: (*Supervisor).sysPath},
	unix.SYS_ACCESS:     {name: "access", serve: (*Supervisor).sysPath},
	unix.SYS_FACCESSAT:  {name: "faccessat", serve: (*Supervisor).sysPath},
	unix.SYS_FACCESSAT2: {name: "faccessat2", serve: (*Supervisor).sysPath},
	unix.SYS_UNLINK:     {name: "unlink", serve: (*Supervisor).sysPath},
	unix.SYS_UNLINKAT:   {name: "unlinkat", serve: (*Supervisor).sysPath},
	unix.SYS_RMDIR:      {name: "rmdir", serve: (*Supervisor).sysPath},
	unix.SYS_MKDIR:      {name: "mkdir", serve: (*Supervisor).sysPath},
	unix.SYS_MKDIRAT:    {name: "mkdirat", serve: (*Supervisor).sysPath},
}

// maxNr bounds the syscall numbers of the dispatch array.
const maxNr = 512

// filterRules returns the filter's rules: exactly the syscalls of the dispatch table.
func filterRules() []rule {
	rules := make([]rule, 0, len(syscalls))
	for nr, e := range syscalls {
		rules = append(rules, rule{Nr: nr, Conds: e.conds})
	}
	return rules
}

// dispatchTable returns the handlers indexed by syscall number, for the receive loop.
func dispatchTable() *[maxNr]handler {
	var t [maxNr]handler
	for nr, e := range syscalls {
		t[nr] = e.serve
	}
	return &t
}

// syscallName returns the name of a notified syscall, for reports.
func syscallName(nr int) string {
	if e, ok := syscalls[uint32(nr)]; ok {
		return e.name
	}
	return "syscall " + itoa(nr)
}
