package attach

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// UprobePMU returns the perf event type of the kernel's uprobe PMU and the bit of
// perf_event_attr.config that asks for a uretprobe, as tools read them from sysfs
// (/sys/bus/event_source/devices/uprobe/type and format/retprobe, "config:0"). A uprobe's
// perf_event_attr has the file's path at config1 and the probe's file offset at config2.
func UprobePMU() (typ uint32, retprobeBit uint, err error) {
	const dir = "/sys/bus/event_source/devices/uprobe/"
	b, err := os.ReadFile(dir + "type")
	if err != nil {
		return 0, 0, fmt.Errorf("uprobe PMU: %w", err)
	}
	t, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("uprobe PMU type %q: %w", b, err)
	}
	b, err = os.ReadFile(dir + "format/retprobe")
	if err != nil {
		return 0, 0, fmt.Errorf("uprobe PMU: %w", err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "config:")
	bit, err2 := strconv.ParseUint(v, 10, 6)
	if !ok || err2 != nil {
		return 0, 0, fmt.Errorf("uprobe PMU retprobe format %q", b)
	}
	return uint32(t), uint(bit), nil
}
