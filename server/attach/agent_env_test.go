package attach

import (
	"slices"
	"testing"
)

func TestTracedEnv(t *testing.T) {
	got := TracedEnv([]string{"A=1", "LD_PRELOAD=/x.so:/a/libebpfu.so /y.so", "EBPFU_STATE_DIR=/old"}, "/a/libebpfu.so", "/s")
	want := []string{"A=1", "LD_PRELOAD=/a/libebpfu.so:/x.so:/y.so", "EBPFU_STATE_DIR=/s"}
	if !slices.Equal(got, want) {
		t.Errorf("TracedEnv = %q, want %q", got, want)
	}
	got = TracedEnv([]string{"A=1", "EBPFU_STATE_DIR=/keep"}, "/a.so", "")
	want = []string{"A=1", "EBPFU_STATE_DIR=/keep", "LD_PRELOAD=/a.so"}
	if !slices.Equal(got, want) {
		t.Errorf("TracedEnv = %q, want %q", got, want)
	}
}
