package compat

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestBpftraceUprobesInt3: probe points where a 5-byte jump does not fit, which ebpfu patches
// with int3 as the kernel does (a 4-byte function followed at once by another; glibc's
// pthread_rwlock_tryrdlock, whose loop branches back into its first bytes), print under the shim,
// as an ordinary user, what they print on the kernel as root: entry and return probes, exact
// counts, arguments and return values.
func TestBpftraceUprobesInt3(t *testing.T) {
	e := Stage(t, "bpftrace", "gcc")
	work := workload(t, e)
	libc := "/lib/x86_64-linux-gnu/libc.so.6"
	if _, err := os.Stat(libc); err != nil {
		t.Skipf("no %s", libc)
	}
	for _, tc := range []struct{ name, prog string }{
		{"tiny function", `uprobe:W:tiny { @c = count(); @s = sum(arg0); @h = hist(arg0); }
			uretprobe:W:tiny { @r = sum(retval); @mx = max(retval); }
			uprobe:W:tiny_after { @after = count(); } uretprobe:W:tiny_after { @ra = sum(retval); }`},
		{"branch into the first bytes", `uprobe:` + libc + `:pthread_rwlock_tryrdlock /pid == cpid/ { @t = count(); }
			uretprobe:` + libc + `:pthread_rwlock_tryrdlock /pid == cpid/ { @ret[retval] = count(); }`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog := strings.ReplaceAll(tc.prog, "probe:W:", "probe:"+work+":")
			argv := []string{"bpftrace", "-e", prog, "-c", work + " tiny 1000"}
			k := e.Kernel(t, 2*time.Minute, argv...)
			s := e.shimIn(t, e.runtimeDir(t), 2*time.Minute, argv...)
			if k.Code != 0 || !strings.HasPrefix(k.Stdout, "Attaching") {
				t.Fatalf("bpftrace on the kernel failed:\n%s", k)
			}
			sameOut(t, tc.name, k, s, normMaps)
			if strings.Contains(s.Stderr, "ebpfu-shim:") {
				t.Errorf("the shim reported:\n%s", s.Stderr)
			}
		})
	}
}
