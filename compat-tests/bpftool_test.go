package compat

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// Ids differ between the kernel and the shim (the kernel's are shared with everyone's objects),
// so they are replaced by "ID" before outputs are compared.
var idPatterns = []*regexp.Regexp{
	regexp.MustCompile(`(?m)^[0-9]+:`),
	regexp.MustCompile(`(map_ids|prog_ids|btf_id) [0-9,]+`),
	regexp.MustCompile(`"(id|btf_id)": ?[0-9]+`),
	regexp.MustCompile(`duration( \(average\))?: [0-9]+ns`),
}

func normalize(s string) string {
	for _, re := range idPatterns {
		s = re.ReplaceAllStringFunc(s, func(m string) string {
			return regexp.MustCompile(`[0-9]+`).ReplaceAllString(m, "ID")
		})
	}
	// A hash map's order depends on its random hash seed, in the kernel too.
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); {
		j := i
		for j < len(lines) && strings.HasPrefix(lines[j], "key: ") {
			j++
		}
		sort.Strings(lines[i:j])
		i = j + 1
	}
	return strings.Join(lines, "\n")
}

// errorLines keeps bpftool's own error lines (the shim adds lines of its own on stderr).
func errorLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "Error:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// scenario runs steps (bpftool argument lists, or "rm ..." commands) on the kernel, in one
// mount namespace with a bpffs at /sys/fs/bpf, and under the shim, each step in a shim of its
// own so that pins go from one shim to the next, and compares each step's exit status, output
// and error lines.
func scenario(t *testing.T, e *Env, steps [][]string) {
	t.Helper()
	var script strings.Builder
	script.WriteString("mount -t bpf bpf /sys/fs/bpf || exit 99\n")
	for _, s := range steps {
		fmt.Fprintf(&script, "echo @@step; echo @@step >&2; %s; echo \"@@rc $?\"\n", shellQuote(s))
	}
	k := e.Kernel(t, 2*time.Minute, "unshare", "--mount", "--propagation", "private", "sh", "-c", script.String())
	if k.Code == 99 {
		t.Skipf("cannot mount a bpffs for the kernel's run:\n%s", k)
	}
	kout := strings.Split(k.Stdout, "@@step\n")[1:]
	kerr := strings.Split(k.Stderr, "@@step\n")[1:]
	if len(kout) != len(steps) || len(kerr) != len(steps) {
		t.Fatalf("the kernel's run ended early:\n%s", k)
	}
	for i, s := range steps {
		out, rc, _ := strings.Cut(kout[i], "@@rc ")
		want := Result{Stdout: out, Stderr: kerr[i]}
		fmt.Sscan(rc, &want.Code)
		got := e.Shim(t, time.Minute, s...)
		if got.Code != want.Code || normalize(got.Stdout) != normalize(want.Stdout) ||
			errorLines(got.Stderr) != errorLines(want.Stderr) {
			t.Errorf("step %d `%s` differs:\n--- kernel (root)\n%s\n--- shim (ordinary user)\n%s", i, strings.Join(s, " "), want, got)
		}
	}
}

func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// TestBpftoolMaps: maps created, pinned, updated, looked up, dumped, shown, deleted and unpinned,
// each step by a new bpftool under a new shim, as on the kernel.
func TestBpftoolMaps(t *testing.T) {
	e := Stage(t, "bpftool", "unshare")
	pin := fmt.Sprintf("/sys/fs/bpf/compat-map-%d", os.Getpid())
	arr := pin + "-array"
	bt := func(args ...string) []string { return append([]string{"bpftool"}, args...) }
	scenario(t, e, [][]string{
		bt("map", "create", pin, "type", "hash", "key", "4", "value", "8", "entries", "16", "name", "m"),
		bt("map", "update", "pinned", pin, "key", "1", "0", "0", "0", "value", "2", "0", "0", "0", "0", "0", "0", "0"),
		bt("map", "update", "pinned", pin, "key", "3", "0", "0", "0", "value", "4", "0", "0", "0", "0", "0", "0", "0"),
		bt("map", "update", "pinned", pin, "key", "3", "0", "0", "0", "value", "5", "0", "0", "0", "0", "0", "0", "0", "noexist"),
		bt("map", "lookup", "pinned", pin, "key", "1", "0", "0", "0"),
		bt("map", "lookup", "pinned", pin, "key", "9", "0", "0", "0"),
		bt("map", "dump", "pinned", pin),
		bt("map", "show", "pinned", pin),
		bt("-j", "map", "show", "pinned", pin),
		bt("map", "delete", "pinned", pin, "key", "3", "0", "0", "0"),
		bt("map", "delete", "pinned", pin, "key", "3", "0", "0", "0"),
		bt("-j", "map", "dump", "pinned", pin),
		bt("map", "freeze", "pinned", pin),
		bt("map", "update", "pinned", pin, "key", "7", "0", "0", "0", "value", "1", "0", "0", "0", "0", "0", "0", "0"),
		{"rm", pin},
		bt("map", "show", "pinned", pin),
		bt("map", "create", arr, "type", "array", "key", "4", "value", "4", "entries", "3", "name", "a"),
		bt("map", "update", "pinned", arr, "key", "2", "0", "0", "0", "value", "9", "0", "0", "0"),
		bt("map", "dump", "pinned", arr),
		bt("map", "delete", "pinned", arr, "key", "2", "0", "0", "0"),
		bt("map", "lookup", "pinned", arr, "key", "3", "0", "0", "0"),
		{"rm", arr},
	})
	if s := e.Shim(t, 30*time.Second, "bpftool", "map", "list"); s.Code != 0 || s.Stdout != "" {
		t.Errorf("maps left after their pins went:\n%s", s)
	}
}

// TestBpftoolProgs: a clang-built object with a map is loaded and pinned with its map, run by
// `prog run ... repeat N` in a later shim (return value and map effect as the kernel's), and
// removed by rm.
func TestBpftoolProgs(t *testing.T) {
	e := Stage(t, "bpftool", "unshare", "clang-14")
	dir := stageFiles(t, e)
	pin := fmt.Sprintf("/sys/fs/bpf/compat-prog-%d", os.Getpid())
	maps := pin + "-maps"
	out := filepath.Join(e.Home, fmt.Sprintf("data-out-%d", os.Getpid()))
	bt := func(args ...string) []string { return append([]string{"bpftool"}, args...) }
	scenario(t, e, [][]string{
		bt("prog", "load", filepath.Join(dir, "count.o"), pin, "pinmaps", maps),
		bt("prog", "run", "pinned", pin, "data_in", filepath.Join(dir, "pkt.bin"), "repeat", "5"),
		bt("prog", "run", "pinned", pin, "data_in", filepath.Join(dir, "pkt.bin"), "data_out", out),
		{"od", "-An", "-tx1", out},
		{"rm", "-f", out},
		bt("map", "dump", "pinned", maps+"/counts"),
		bt("-j", "map", "show", "pinned", maps+"/counts"),
		{"rm", "-r", pin, maps},
		bt("prog", "show", "pinned", pin),
	})
	if s := e.Shim(t, 30*time.Second, "bpftool", "prog", "list"); s.Code != 0 || s.Stdout != "" {
		t.Errorf("programs left after their pins went:\n%s", s)
	}
}

// countSource is a socket filter that counts its runs in an array map and returns skb->len.
const countSource = `#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("socket")
int count_packets(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&counts, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	return skb->len;
}

char LICENSE[] SEC("license") = "GPL";
`

// stageFiles builds count.o and writes a 64-byte packet into a directory the user can read.
func stageFiles(t *testing.T, e *Env) string {
	t.Helper()
	dir := filepath.Join(e.Dir, "files")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "count.c")
	if err := os.WriteFile(src, []byte(countSource), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("clang-14", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
		"-c", src, "-o", filepath.Join(dir, "count.o")).CombinedOutput()
	if err != nil {
		t.Fatalf("clang: %v\n%s", err, out)
	}
	pkt := make([]byte, 64)
	for i := range pkt {
		pkt[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(dir, "pkt.bin"), pkt, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "count.o"), 0o644)
	return dir
}
