package server

import (
	"fmt"
	"syscall"
)

// Log level bits of the kernel's struct bpf_verifier_log.
const (
	logLevel1 = 1
	logLevel2 = 2
	logStats  = 4
	logFixed  = 8
	logMask   = logLevel1 | logLevel2 | logStats | logFixed
)

// vlog is a verifier (or BTF) log bound for a caller's buffer, with the kernel's semantics: a
// log that does not fit keeps its end (its start with BPF_LOG_FIXED), is NUL-terminated, and
// makes the command fail with ENOSPC; the true size is reported when asked.
type vlog struct {
	p     Process
	buf   uint64
	size  uint32
	level uint32
	data  []byte
	total uint64 // bytes written, without the NUL
}

// newVlog checks the log attributes as bpf_verifier_log_attr_valid does.
func newVlog(p Process, buf uint64, size, level uint32) (*vlog, error) {
	if (buf == 0) != (size == 0) || buf != 0 && level == 0 || level&^logMask != 0 || size > ^uint32(0)>>2 {
		return nil, syscall.EINVAL
	}
	return &vlog{p: p, buf: buf, size: size, level: level}, nil
}

// Write implements io.Writer for the verifier's Options.Log.
func (l *vlog) Write(b []byte) (int, error) {
	if l.level == 0 {
		return len(b), nil
	}
	l.total += uint64(len(b))
	l.data = append(l.data, b...)
	if keep := int(l.size); len(l.data) > 2*keep+4096 {
		if l.level&logFixed != 0 {
			l.data = l.data[:keep]
		} else {
			l.data = append(l.data[:0], l.data[len(l.data)-keep:]...)
		}
	}
	return len(b), nil
}

func (l *vlog) printf(format string, args ...any) { fmt.Fprintf(l, format, args...) }

// finish copies the log to the caller's buffer and returns the size the whole log needs
// (0 when logging is off), with ENOSPC when it was cut.
func (l *vlog) finish() (trueSize uint32, err error) {
	if l.level == 0 {
		return 0, nil
	}
	trueSize = uint32(min(l.total+1, uint64(^uint32(0))))
	if l.buf == 0 {
		return trueSize, nil
	}
	out := l.data
	cut := uint64(trueSize) > uint64(l.size)
	if keep := int(l.size) - 1; len(out) > keep {
		if l.level&logFixed != 0 {
			out = out[:keep]
		} else {
			out = out[len(out)-keep:]
		}
	}
	out = append(out[:len(out):len(out)], 0)
	if err := writeUser(l.p, l.buf, out); err != nil {
		return trueSize, err
	}
	if cut {
		return trueSize, syscall.ENOSPC
	}
	return trueSize, nil
}

// finishLog ends a command's log: it copies the log out and, when the caller's attr is large
// enough to hold it, writes the true size at trueSizeOff of the attr.
func (s *Server) finishLog(c *call, l *vlog, trueSizeOff int) error {
	trueSize, err := l.finish()
	if c.attr.size >= uint32(trueSizeOff+4) {
		if werr := c.attr.put32(c.p, trueSizeOff, trueSize); werr != nil {
			return werr
		}
	}
	return err
}
