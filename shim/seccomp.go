package shim

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's seccomp user-notification structures (include/uapi/linux/seccomp.h).

// seccompData is struct seccomp_data: the syscall as the filter and the supervisor see it.
type seccompData struct {
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

// notif is struct seccomp_notif.
type notif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  seccompData
}

// notifResp is struct seccomp_notif_resp.
type notifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// notifAddFD is struct seccomp_notif_addfd.
type notifAddFD struct {
	ID         uint64
	Flags      uint32
	SrcFD      uint32
	NewFD      uint32
	NewFDFlags uint32
}

// notifSizes is struct seccomp_notif_sizes.
type notifSizes struct {
	Notif, Resp, Data uint16
}

// checkNotifSizes makes sure the kernel's structures are the ones this file declares, so that
// a RECV never writes past a notif.
func checkNotifSizes() error {
	var s notifSizes
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_NOTIF_SIZES, 0, uintptr(unsafe.Pointer(&s))); e != 0 {
		return fmt.Errorf("seccomp(GET_NOTIF_SIZES): %w", e)
	}
	if int(s.Notif) > int(unsafe.Sizeof(notif{})) || int(s.Data) != int(unsafe.Sizeof(seccompData{})) {
		return fmt.Errorf("seccomp notification is %d bytes (data %d), this build knows %d (%d)",
			s.Notif, s.Data, unsafe.Sizeof(notif{}), unsafe.Sizeof(seccompData{}))
	}
	return nil
}

// listener is the supervisor's end of a seccomp filter: the fd that
// SECCOMP_FILTER_FLAG_NEW_LISTENER returned in the tool's init.
type listener struct {
	fd int
}

// errGone reports that the notifying task is gone (killed, or its syscall interrupted): the
// notification must be dropped without a reply.
var errGone = errors.New("the notifying task is gone")

func (l *listener) ioctl(req uintptr, arg unsafe.Pointer) (uintptr, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(l.fd), req, uintptr(arg))
		switch e {
		case 0:
			return r, nil
		case unix.EINTR:
			continue
		case unix.ENOENT:
			return 0, errGone
		default:
			return 0, e
		}
	}
}

// setSyncWakeUp asks the kernel to wake the supervisor on the notifying task's CPU and switch
// to it at once (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP), which halves the round trip.
func (l *listener) setSyncWakeUp() error {
	_, err := l.ioctl(unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS, unsafe.Pointer(uintptr(unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)))
	return err
}

// receive waits for the next notification. errGone means one arrived and went away again.
func (l *listener) receive(n *notif) error {
	*n = notif{}
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(l.fd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(n)))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		case unix.ENOENT:
			return errGone
		default:
			return fmt.Errorf("seccomp RECV: %w", e)
		}
	}
}

// respond ends the notified syscall with val or errno, or lets it run (cont).
func (l *listener) respond(id uint64, val int64, errno syscall.Errno, cont bool) error {
	r := notifResp{ID: id, Val: val, Error: -int32(errno)}
	if cont {
		r = notifResp{ID: id, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	}
	_, err := l.ioctl(unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&r))
	return err
}

// valid reports whether notification id is still pending: the task that made it has not been
// killed (so its pid, and the memory just read through it, still belong to it).
func (l *listener) valid(id uint64) bool {
	_, err := l.ioctl(unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id))
	return err == nil
}

// addFD installs srcFD in the notifying task as its lowest free fd and returns its number.
// With send, the new fd also ends the syscall as its return value, atomically.
func (l *listener) addFD(id uint64, srcFD int, cloexec, send bool) (int, error) {
	a := notifAddFD{ID: id, SrcFD: uint32(srcFD)}
	if cloexec {
		a.NewFDFlags = unix.O_CLOEXEC
	}
	if send {
		a.Flags = unix.SECCOMP_ADDFD_FLAG_SEND
	}
	r, err := l.ioctl(unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&a))
	return int(r), err
}
