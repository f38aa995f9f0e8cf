package verifier

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/program"
)

var (
	probeLoadRe = regexp.MustCompile(`bpf\(PROG_LOAD,size=\d+\) = (-?\d+)(?: errno=([^=]*) prog_type=| prog_type=)(\d+) .*insns\[16\]=(85000000[0-9a-f]{8}9500000000000000)`)
	probeLogRe  = regexp.MustCompile(`verifier_log\(\d+ bytes\): "(.*)"$`)
)

// TestFeatureProbeAnswers replays bpftool's `feature probe` helper probes (`call N; exit` for
// every program type and helper) recorded against the reference kernel: our verifier must give
// each the kernel's verdict, errno and reason.
func TestFeatureProbeAnswers(t *testing.T) {
	dir, ok := conformance.FindDir()
	if !ok {
		t.Skip("no ../shared directory")
	}
	path := filepath.Join(filepath.Dir(filepath.Dir(dir)), "surface", "traces", "p_g8_feature_probe.snoop.gz")
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("no feature probe trace: %v", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	errnos := map[string]syscall.Errno{"": 0, "Permission denied": syscall.EACCES, "Invalid argument": syscall.EINVAL}
	type probe struct {
		typ   program.Type
		code  []byte
		errno syscall.Errno
		log   string
	}
	var probes []*probe
	sc := bufio.NewScanner(gz)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	var last *probe
	for sc.Scan() {
		line := sc.Text()
		if m := probeLoadRe.FindStringSubmatch(line); m != nil {
			typ, _ := strconv.Atoi(m[3])
			code, _ := hex.DecodeString(m[4])
			e, known := errnos[m[2]]
			if !known {
				last = nil
				continue
			}
			last = &probe{typ: program.Type(typ), code: code, errno: e}
			probes = append(probes, last)
			continue
		}
		if m := probeLogRe.FindStringSubmatch(line); m != nil && last != nil {
			last.log = strings.ReplaceAll(m[1], `\n`, "\n")
			last = nil
		}
	}
	if len(probes) < 1000 {
		t.Fatalf("only %d probes in the trace", len(probes))
	}
	loadable := func(t program.Type) bool { return t != 20 && (t < 26 || t > 29) }
	same, compared := 0, 0
	for _, p := range probes {
		if !loadable(p.typ) {
			continue
		}
		compared++
		id := int32(binary.LittleEndian.Uint32(p.code[4:]))
		var log bytes.Buffer
		_, err := Verify(mustDecode(t, p.code), &Options{Type: p.typ, Helpers: helper.ForType(uint32(p.typ), nil),
			GPL: true, Log: &log, LogLevel: 1, PossibleCPUs: 2 /* the recording machine's */})
		ours := syscall.Errno(0)
		if err != nil {
			ours = Errno(err)
		}
		want := ""
		if p.errno != 0 {
			want = lastError(p.log)
		}
		got := ""
		if err != nil {
			got = lastError(log.String())
		}
		if ours != p.errno || got != want {
			t.Errorf("type %d helper %s#%d: ours %v %q, kernel %v %q", p.typ, helper.Name(helper.ID(id)), id, ours, got, p.errno, want)
			continue
		}
		same++
	}
	t.Logf("%d of %d helper probes answered as the kernel does", same, compared)
}
