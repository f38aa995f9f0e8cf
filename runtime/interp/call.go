package interp

import (
	"errors"
	"fmt"
	"math"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// callHelper calls helper id with r1..r5 and puts its result in r0. A failure is also left in
// m.err.
func (m *Machine) callHelper(env *helper.Env, id uint64, pc int) (err error) {
	defer func() { m.err = err }()
	if id > math.MaxInt32 {
		return fault(pc, "call to unknown helper %d", id)
	}
	impl, ok := env.Helpers.Get(helper.ID(id))
	if !ok || impl.Fn == nil {
		return fault(pc, "call to %s, which this run does not offer", helperName(id))
	}
	ret, err := impl.Fn(env, (*[5]uint64)(m.regs[1:6]))
	if err != nil {
		var f *program.Fault
		if errors.As(err, &f) {
			return &program.Fault{PC: pc, Reason: f.Reason}
		}
		return fault(pc, "%s: %v", helperName(id), err)
	}
	m.regs[0] = ret
	return nil
}

// helperName names a helper for messages: "helper 5 (bpf_ktime_get_ns)".
func helperName(id uint64) string {
	if n := helper.Name(helper.ID(id)); n != "" {
		return fmt.Sprintf("helper %d (%s)", id, n)
	}
	return fmt.Sprintf("helper %d", id)
}

// fault returns the fault of the instruction at pc.
func fault(pc int, format string, args ...any) *program.Fault {
	return &program.Fault{PC: pc, Reason: fmt.Sprintf(format, args...)}
}

// memFault describes an access that failed its bounds check.
func memFault(pc int, addr, size uint64, write bool, env *helper.Env) *program.Fault {
	kind := "read"
	if write {
		kind = "write"
	}
	return fault(pc, "invalid %s of %d bytes at %#x: outside the stack and the run's memory %s",
		kind, size, addr, env.Mem.String())
}

// invalidFault is the fault of an instruction Prepare could not decode.
func invalidFault(c *Code, pc int) *program.Fault {
	if why, ok := c.invalid[pc]; ok {
		return fault(pc, "invalid instruction: %s", why)
	}
	return fault(pc, "invalid instruction")
}
