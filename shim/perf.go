package shim

import (
	"encoding/binary"
	"errors"
	"syscall"

	"github.com/ebpfu/ebpfu/server"
	"golang.org/x/sys/unix"
)

// sysPerfEventOpen serves perf_event_open(attr, pid, cpu, group_fd, flags) through the server.
func (s *Supervisor) sysPerfEventOpen(r *Request) reply {
	res, err := s.srv.PerfEventOpen(r, r.Args[0], int32(r.Args[1]), int32(r.Args[2]), int32(r.Args[3]), r.Args[4])
	if err != nil {
		return fail(err)
	}
	return sendFile(res.File, !res.NoCloexec)
}

// sysIoctl serves the perf_event ioctls on our perf events and lets every other one through.
// It answers later: attaching a program to a uprobe waits for traced processes.
func (s *Supervisor) sysIoctl(r *Request) reply {
	id, err := r.FileOf(int(int32(r.Args[0])))
	if err != nil {
		return cont() // the kernel answers EBADF
	}
	return later(func() reply {
		v, ours, err := s.srv.PerfIoctl(r, id, r.Args[1], r.Args[2])
		switch {
		case !ours:
			return cont()
		case err != nil:
			return fail(err)
		}
		return value(v)
	})
}

// sysMmap checks the tool's shared mappings of our perf events (how much of the ring it maps
// decides where records wrap) and lets the kernel map the file.
func (s *Supervisor) sysMmap(r *Request) reply {
	id, err := r.FileOf(int(int32(r.Args[4])))
	if err != nil {
		return cont()
	}
	if ours, err := s.srv.PerfMmap(id, r.Args[1], r.Args[5]); ours && err != nil {
		return fail(err)
	}
	return cont()
}

// epollKey names one registration of a perf event in a tool's epoll instance.
type epollKey struct {
	epoll, target server.FileID
}

// epollReg is the stand-in of a registration: an eventfd in the tool's own epoll instance (which
// the supervisor holds a copy of), written by the server when records arrive.
type epollReg struct {
	ep, efd int
}

// sysEpollCtl emulates epoll_ctl for our perf events, whose files the kernel cannot poll: the
// supervisor takes the tool's epoll fd (pidfd_getfd) and adds an eventfd with the tool's events
// and data instead, edge-triggered so that one write is one wakeup. Other fds go to the kernel.
func (s *Supervisor) sysEpollCtl(r *Request) reply {
	epfd, op, fd := int(int32(r.Args[0])), int(int32(r.Args[1])), int(int32(r.Args[2]))
	target, err := r.FileOf(fd)
	if err != nil || !s.srv.Pollable(target) {
		return cont()
	}
	epID, err := r.FileOf(epfd)
	if err != nil {
		return errno(syscall.EBADF)
	}
	key := epollKey{epoll: epID, target: target}
	reg := s.epolls[key]
	var ev [12]byte
	if op != unix.EPOLL_CTL_DEL {
		if err := r.ReadMem(r.Args[3], ev[:]); err != nil {
			return fail(err)
		}
		binary.LittleEndian.PutUint32(ev[:], binary.LittleEndian.Uint32(ev[:])|unix.EPOLLET)
	}
	switch op {
	case unix.EPOLL_CTL_ADD:
		if reg != nil {
			return errno(syscall.EEXIST)
		}
		ep, err := s.takeFD(r, epfd)
		if err != nil {
			return fail(err)
		}
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			unix.Close(ep)
			return fail(err)
		}
		if err := epollCtl(ep, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
			unix.Close(ep)
			unix.Close(efd)
			return fail(err)
		}
		if err := s.srv.AddWaker(target, efd); err != nil {
			unix.Close(ep)
			unix.Close(efd)
			return fail(err)
		}
		s.epolls[key] = &epollReg{ep: ep, efd: efd}
	case unix.EPOLL_CTL_MOD:
		if reg == nil {
			return errno(syscall.ENOENT)
		}
		if err := epollCtl(reg.ep, unix.EPOLL_CTL_MOD, reg.efd, &ev); err != nil {
			return fail(err)
		}
	case unix.EPOLL_CTL_DEL:
		if reg == nil {
			return errno(syscall.ENOENT)
		}
		epollCtl(reg.ep, unix.EPOLL_CTL_DEL, reg.efd, &ev)
		s.srv.RemoveWaker(target, reg.efd)
		unix.Close(reg.ep)
		delete(s.epolls, key)
	default:
		return errno(syscall.EINVAL)
	}
	return value(0)
}

// takeFD returns a copy of the task's fd (pidfd_getfd).
func (s *Supervisor) takeFD(r *Request, fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(r.Tid, unix.PIDFD_THREAD)
	if err != nil {
		return -1, errGone
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		if errors.Is(err, syscall.EBADF) {
			return -1, syscall.EBADF
		}
		return -1, err
	}
	return dup, nil
}

// epollCtl is epoll_ctl with the packed struct epoll_event as bytes.
func epollCtl(ep, op, fd int, ev *[12]byte) error {
	var e unix.EpollEvent
	e.Events = binary.LittleEndian.Uint32(ev[:])
	e.Fd = int32(binary.LittleEndian.Uint32(ev[4:]))
	e.Pad = int32(binary.LittleEndian.Uint32(ev[8:]))
	return unix.EpollCtl(ep, op, fd, &e)
}
