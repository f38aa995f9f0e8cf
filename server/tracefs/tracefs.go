// Package tracefs serves the kernel's tracing file system (/sys/kernel/tracing) to tools under
// ebpfu-shim: the files they read to learn about tracepoints (available_events, each event's id
// and format) answer as the kernel's.
//
// The source is the kernel itself when the user can read its tracefs; otherwise (tracefs is
// root-only, and often not mounted) a capture of the kernel's tracefs made as root by
// scripts/capture-tracefs.sh and shipped in data/tracefs.gz: the whole tree of names, with the
// content of the files tools read (available_events, each event's id and format, the headers;
// other files are empty). The capture is extracted once
// into the user's state directory, a read-only tree the supervisor hands out files of, so that
// directories list and files read, seek and stat as real files do.
package tracefs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Root is where tools expect tracefs.
const Root = "/sys/kernel/tracing"

// Magic is tracefs's statfs f_type (TRACEFS_MAGIC).
const Magic = 0x74726163

//go:embed data/tracefs.gz
var capture []byte

// FS is the tracefs a server shows its tools.
type FS struct {
	live bool   // the kernel's own tracefs is readable: the kernel answers
	root string // the extracted capture, when not live

	once   sync.Once
	events map[uint64]string // tracepoint id -> "category:name"
	err    error
}

// Open returns the tracefs for a user whose state directory is stateDir: the kernel's when its
// events can be read, else the capture, extracted under stateDir on first use.
func Open(stateDir string) *FS {
	if unix.Access(Root+"/events", unix.R_OK|unix.X_OK) == nil && unix.Access(Root+"/available_events", unix.R_OK) == nil {
		return &FS{live: true}
	}
	return openCapture(stateDir)
}

// openCapture returns the tracefs of the capture, extracted under stateDir.
func openCapture(stateDir string) *FS {
	sum := sha256.Sum256(capture)
	return &FS{root: filepath.Join(stateDir, "tracefs-"+hex.EncodeToString(sum[:6]))}
}

// Live reports whether the kernel's own tracefs is served.
func (fs *FS) Live() bool { return fs.live }

// Release is the kernel release the capture was made on ("" when the kernel's tracefs is live).
func (fs *FS) Release() string {
	if fs.live {
		return ""
	}
	return captureRelease()
}

// Mirror returns the file that stands for the clean absolute path p inside tracefs, and whether
// p is in tracefs and served from the capture (false for every path when the kernel's tracefs
// is live: the kernel answers). The capture is extracted on first use.
func (fs *FS) Mirror(p string) (string, bool, error) {
	if fs.live {
		return "", false, nil
	}
	var rest string
	switch {
	case p == Root:
	case strings.HasPrefix(p, Root+"/"):
		rest = p[len(Root)+1:]
	default:
		return "", false, nil
	}
	if err := fs.extract(); err != nil {
		return "", true, err
	}
	return filepath.Join(fs.root, rest), true, nil
}

// Event returns the "category:name" of tracepoint id.
func (fs *FS) Event(id uint64) (string, bool) {
	fs.once.Do(fs.loadEvents)
	name, ok := fs.events[id]
	return name, ok
}

// loadEvents reads every event's id, from the kernel when live, else from the capture.
func (fs *FS) loadEvents() {
	fs.events = map[uint64]string{}
	if fs.live {
		paths, _ := filepath.Glob(Root + "/events/*/*/id")
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil {
				fs.addEvent(strings.TrimPrefix(p, Root+"/"), b)
			}
		}
		return
	}
	fs.err = walkCapture(func(name string, dir bool, content []byte) error {
		if !dir && strings.HasSuffix(name, "/id") {
			fs.addEvent(name, content)
		}
		return nil
	})
}

// addEvent records the event whose id file is at path (relative to tracefs: events/CAT/NAME/id).
func (fs *FS) addEvent(path string, content []byte) {
	parts := strings.Split(path, "/")
	if len(parts) != 4 {
		return
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(content)), 10, 64)
	if err == nil {
		fs.events[id] = parts[1] + ":" + parts[2]
	}
}

// Files the kernel's tracefs answers with an error for everyone here, whatever the capture
// holds: function lists need ftrace function tracing with kprobes, which this kernel lacks
// (open gives EPERM even to root).
var refused = map[string]unix.Errno{
	"available_filter_functions":       unix.EPERM,
	"available_filter_functions_addrs": unix.EPERM,
}

// Refused returns the errno the kernel answers for opening tracefs path p (relative to Root),
// or 0.
func Refused(rel string) unix.Errno { return refused[rel] }

// extract makes the capture's tree under fs.root once: into a directory of its own, renamed into
// place, so that concurrent shims of the user never see half a tree.
func (fs *FS) extract() error {
	if _, err := os.Stat(fs.root); err == nil {
		return nil
	}
	tmp, err := os.MkdirTemp(filepath.Dir(fs.root), ".tracefs-")
	if err != nil {
		return fmt.Errorf("extracting tracefs: %w", err)
	}
	defer os.RemoveAll(tmp)
	err = walkCapture(func(name string, dir bool, content []byte) error {
		dst := filepath.Join(tmp, name)
		if dir {
			return os.MkdirAll(dst, 0o755)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, content, 0o644)
	})
	if err != nil {
		return fmt.Errorf("extracting tracefs: %w", err)
	}
	if err := os.Rename(tmp, fs.root); err != nil {
		if _, serr := os.Stat(fs.root); serr == nil {
			return nil // another shim was first
		}
		return fmt.Errorf("extracting tracefs: %w", err)
	}
	return nil
}

// walkCapture calls fn for every entry of the capture (the format of scripts/capture-tracefs.sh),
// with its clean relative name and, for a file, its content.
func walkCapture(fn func(name string, dir bool, content []byte) error) error {
	zr, err := gzip.NewReader(bytes.NewReader(capture))
	if err != nil {
		return fmt.Errorf("tracefs capture: %w", err)
	}
	r := bufio.NewReaderSize(zr, 1<<16)
	header, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(header, "ebpfu-tracefs 1 ") {
		return fmt.Errorf("tracefs capture: bad header %q", header)
	}
	for {
		line, err := r.ReadString('\n')
		if errors.Is(err, io.EOF) && line == "" {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tracefs capture: %w", err)
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return fmt.Errorf("tracefs capture: bad entry %q", line)
		}
		name := filepath.Clean(f[1])
		if name == "." || strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			return fmt.Errorf("tracefs capture: bad name %q", f[1])
		}
		var content []byte
		switch {
		case f[0] == "d" && len(f) == 2:
		case f[0] == "f" && len(f) == 3:
			n, err := strconv.Atoi(f[2])
			if err != nil || n < 0 {
				return fmt.Errorf("tracefs capture: bad entry %q", line)
			}
			content = make([]byte, n)
			if _, err := io.ReadFull(r, content); err != nil {
				return fmt.Errorf("tracefs capture: %s: %w", name, err)
			}
		default:
			return fmt.Errorf("tracefs capture: bad entry %q", line)
		}
		if err := fn(name, f[0] == "d", content); err != nil {
			return err
		}
	}
}

// captureRelease returns the kernel release of the capture's header.
func captureRelease() string {
	zr, err := gzip.NewReader(bytes.NewReader(capture))
	if err != nil {
		return ""
	}
	header, _ := bufio.NewReader(zr).ReadString('\n')
	return strings.TrimSpace(strings.TrimPrefix(header, "ebpfu-tracefs 1 "))
}
