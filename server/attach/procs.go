package attach

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Processes returns the pids of the processes registered in the state directory: traced
// processes whose agent runs (each keeps a file procs/PID; stale files of dead processes are
// removed here).
func (t *Table) Processes() []int {
	ents, err := os.ReadDir(filepath.Join(t.dir, procsDir))
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if !hasAgent(pid) {
			if errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
				os.Remove(filepath.Join(t.dir, procsDir, e.Name()))
			}
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// hasAgent reports whether process pid catches the doorbell signal: a registered pid whose
// process has since exec'd a program without the agent (or was reused) must not get it, as the
// signal's default action would kill it.
func hasAgent(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(DoorbellSignal-1)) != 0
		}
	}
	return false
}

// Preloads reports whether the environment process pid started with preloads the agent: a
// process that is not traced yet but whose next program will be, such as the fork of a tool
// that becomes its -c workload (the tool's own image leaves the agent inert).
func Preloads(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, "LD_PRELOAD="); ok {
			for _, p := range strings.FieldsFunc(v, func(r rune) bool { return r == ':' || r == ' ' }) {
				if filepath.Base(p) == AgentName {
					return true
				}
			}
		}
	}
	return false
}

// siginfo is the kernel's siginfo_t for a queued signal (SI_QUEUE).
type siginfo struct {
	signo, errno, code, _ int32
	pid, uid              uint32
	value                 uint64
	_                     [96]byte
}

const siQueue = -1

// ring sends the doorbell to pid.
func ring(pid int) error {
	si := siginfo{signo: DoorbellSignal, code: siQueue, pid: uint32(os.Getpid()), uid: uint32(os.Getuid()), value: DoorbellValue}
	_, _, e := unix.Syscall(unix.SYS_RT_SIGQUEUEINFO, uintptr(pid), DoorbellSignal, uintptr(unsafe.Pointer(&si)))
	if e != 0 {
		return e
	}
	return nil
}

// applied returns the table generation process pid last applied (its agent writes it in its
// procs file after each sync).
func (t *Table) applied(pid int) (uint64, bool) {
	b, err := os.ReadFile(filepath.Join(t.dir, procsDir, strconv.Itoa(pid)))
	if err != nil || len(b) < 8 {
		return 0, err == nil
	}
	return binary.LittleEndian.Uint64(b), true
}

// stopped reports whether process pid is stopped (job control or a tracer): it handles the
// doorbell when it continues, before it runs any of its own code.
func stopped(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't')
}

// dead reports whether process pid has ended (a zombie its parent has not reaped).
func dead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// Ring tells every registered process to apply the table and waits until each has applied the
// current generation or timeout passes, as the kernel's attach is in place when the call
// returns. Stopped processes are not waited for; processes that did not answer in time (blocking
// the signal) are listed in the error. Both apply the table when they next can.
func (t *Table) Ring(timeout time.Duration) error {
	gen := t.Gen()
	pids := t.Processes()
	var waiting []int
	for _, pid := range pids {
		if ring(pid) == nil {
			waiting = append(waiting, pid)
		}
	}
	deadline := time.Now().Add(timeout)
	for len(waiting) > 0 {
		next := waiting[:0]
		for _, pid := range waiting {
			g, ok := t.applied(pid)
			if ok && g < gen && unix.Kill(pid, 0) == nil && !stopped(pid) && !dead(pid) {
				next = append(next, pid)
			}
		}
		waiting = next
		if len(waiting) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Microsecond)
	}
	if len(waiting) > 0 {
		return fmt.Errorf("processes %v did not apply the attachments within %v", waiting, timeout)
	}
	return nil
}
