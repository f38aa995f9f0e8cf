package verifier

import (
	"fmt"
	"io"
)

// vlog accumulates the verifier log when the caller asked for one.
type vlog struct {
	w     io.Writer
	level uint32
}

func (l *vlog) enabled() bool { return l.w != nil && l.level != 0 }

func (l *vlog) printf(format string, args ...any) {
	if l.enabled() {
		fmt.Fprintf(l.w, format, args...)
	}
}
