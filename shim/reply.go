package shim

import (
	"errors"
	"os"
	"syscall"
)

// reply is how a handler ends a notified syscall.
type reply struct {
	val     int64
	errno   syscall.Errno
	cont    bool     // let the kernel run the syscall as the task made it
	drop    bool     // the task is gone: no answer
	file    *os.File // install this file in the task; its fd number is the result
	cloexec bool
	later   func() reply // the answer comes from this, run on a goroutine of its own
}

// value ends the syscall with return value v.
func value(v int64) reply { return reply{val: v} }

// errno ends the syscall with -1 and errno e.
func errno(e syscall.Errno) reply { return reply{errno: e} }

// fail ends the syscall with the errno err carries (EINVAL for an error without one), or drops
// it when the task is gone.
func fail(err error) reply {
	if errors.Is(err, errGone) {
		return reply{drop: true}
	}
	var e syscall.Errno
	if errors.As(err, &e) && e != 0 {
		return reply{errno: e}
	}
	return reply{errno: syscall.EINVAL}
}

// cont lets the kernel run the syscall.
func cont() reply { return reply{cont: true} }

// sendFile ends the syscall with a new fd of the task that refers to f. The supervisor closes
// f once it is installed.
func sendFile(f *os.File, cloexec bool) reply { return reply{file: f, cloexec: cloexec} }

// later answers the syscall with what fn returns, run without holding up the supervisor's other
// notifications.
func later(fn func() reply) reply { return reply{later: fn} }
