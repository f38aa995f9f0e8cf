package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/helper"
)

// helpers returns the helpers a program run by ebpfu-vm may call: the ones that need nothing
// but the process itself (clocks, random numbers, the current task's ids and name).
func helpers() (*helper.Table, error) {
	t := helper.NewTable()
	fns := map[helper.ID]helper.Func{
		helper.KtimeGetNS:       clock(unix.CLOCK_MONOTONIC),
		helper.KtimeGetBootNS:   clock(unix.CLOCK_BOOTTIME),
		helper.KtimeGetCoarseNS: clock(unix.CLOCK_MONOTONIC_COARSE),
		helper.GetPrandomU32:    func(*helper.Env, *[5]uint64) (uint64, error) { return uint64(rand.Uint32()), nil },
		helper.GetCurrentPidTgid: func(*helper.Env, *[5]uint64) (uint64, error) {
			return uint64(os.Getpid())<<32 | uint64(unix.Gettid()), nil
		},
		helper.GetCurrentUIDGid: func(*helper.Env, *[5]uint64) (uint64, error) {
			return uint64(os.Getgid())<<32 | uint64(os.Getuid()), nil
		},
		helper.GetCurrentComm: currentComm,
	}
	for id, fn := range fns {
		if err := t.Register(id, fn); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func clock(id int32) helper.Func {
	return func(*helper.Env, *[5]uint64) (uint64, error) {
		var ts unix.Timespec
		if err := unix.ClockGettime(id, &ts); err != nil {
			return 0, err
		}
		return uint64(ts.Nano()), nil
	}
}

// currentComm is bpf_get_current_comm(buf, size): the process's name, NUL-padded.
func currentComm(env *helper.Env, a *[5]uint64) (uint64, error) {
	buf, ok := env.Mem.Bytes(a[0], a[1], true)
	if !ok {
		return 0, fmt.Errorf("buffer %#x+%d is not writable memory of the run", a[0], a[1])
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	name := strings.TrimSuffix(string(comm), "\n")
	clear(buf)
	if len(buf) > 0 {
		copy(buf[:len(buf)-1], name)
	}
	return 0, nil
}

// errnoName returns the symbolic name of an errno ("EINVAL").
func errnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}
