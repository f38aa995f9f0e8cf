package compat

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Map types runtime/maps does not hold (yet): the kernel's feature probe finds them, ebpfu's
// answers MAP_CREATE with EINVAL (and the shim says so), so bpftool reports them NOT available.
var mapTypesNotOffered = map[string]bool{
	"cgroup_array": true, "lpm_trie": true, "array_of_maps": true, "hash_of_maps": true, "devmap": true,
	"sockmap": true, "cpumap": true, "xskmap": true, "sockhash": true, "cgroup_storage": true,
	"reuseport_sockarray": true, "percpu_cgroup_storage": true, "queue": true, "stack": true,
	"sk_storage": true, "devmap_hash": true, "inode_storage": true, "task_storage": true,
	"bloom_filter": true, "user_ringbuf": true,
}

// jitSysctlLine reports the lines bpftool prints from /proc/sys/net/core/bpf_jit_{harden,
// kallsyms,limit}: root-only files (mode 0600) about the kernel's JIT, which the tool's real user
// cannot read and ebpfu does not use, so under the shim bpftool says it cannot retrieve them.
func jitSysctlLine(l string) bool {
	for _, s := range []string{"JIT hardening", "JIT compiler hardening", "JIT kallsyms", "JIT compiler kallsyms",
		"memory limit for JIT compiler"} {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// notOfferedMapLine reports a map type line that differs because ebpfu does not offer the type.
func notOfferedMapLine(kernel, shim string) bool {
	name, ok := strings.CutPrefix(kernel, "eBPF map_type ")
	name, _, _ = strings.Cut(name, " ")
	return ok && mapTypesNotOffered[name] && shim == "eBPF map_type "+name+" is NOT available" &&
		kernel == "eBPF map_type "+name+" is available"
}

// TestBpftoolFeatureProbe: `bpftool feature probe kernel` under the shim reports what the kernel
// reports (program types, helpers per type, misc probes: ~5,400 loads and 33 map creations
// answered as the kernel's trace shows), except the lines about what ebpfu deliberately does not
// offer.
func TestBpftoolFeatureProbe(t *testing.T) {
	e := Stage(t, "bpftool")
	k := e.Kernel(t, 2*time.Minute, "bpftool", "feature", "probe", "kernel")
	s := e.Shim(t, 2*time.Minute, "bpftool", "feature", "probe", "kernel")
	if k.Code != 0 || s.Code != 0 {
		t.Fatalf("feature probe failed:\n--- kernel\n%s\n--- shim\n%s", k, s)
	}
	kl, sl := strings.Split(k.Stdout, "\n"), strings.Split(s.Stdout, "\n")
	if len(kl) != len(sl) || len(kl) < 1000 {
		t.Fatalf("feature probe printed %d lines under the shim, %d on the kernel", len(sl), len(kl))
	}
	allowed := 0
	for i := range kl {
		switch {
		case kl[i] == sl[i]:
		case jitSysctlLine(kl[i]) && jitSysctlLine(sl[i]), notOfferedMapLine(kl[i], sl[i]):
			allowed++
		default:
			t.Errorf("line %d differs:\n kernel %s\n   shim %s", i+1, kl[i], sl[i])
		}
	}
	if allowed > len(mapTypesNotOffered)+3 {
		t.Errorf("%d lines differ in allowed ways, more than the %d expected", allowed, len(mapTypesNotOffered)+3)
	}

	// The JSON form: every section but the system configuration's JIT settings, and the map
	// types ebpfu does not offer.
	k = e.Kernel(t, 2*time.Minute, "bpftool", "-j", "feature", "probe", "kernel")
	s = e.Shim(t, 2*time.Minute, "bpftool", "-j", "feature", "probe", "kernel")
	var kj, sj map[string]map[string]any
	if err := json.Unmarshal([]byte(k.Stdout), &kj); err != nil {
		t.Fatalf("kernel's JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(s.Stdout), &sj); err != nil {
		t.Fatalf("shim's JSON: %v\n%s", err, s)
	}
	for _, j := range []map[string]map[string]any{kj, sj} {
		for key := range j["system_config"] {
			if strings.Contains(key, "jit") && key != "bpf_jit_enable" {
				delete(j["system_config"], key)
			}
		}
		for name := range mapTypesNotOffered {
			delete(j["map_types"], "have_"+name+"_map_type")
		}
	}
	if len(kj) < 5 || !reflect.DeepEqual(kj, sj) {
		for sec := range kj {
			for key, v := range kj[sec] {
				if !reflect.DeepEqual(v, sj[sec][key]) {
					t.Errorf("JSON %s.%s: kernel %v, shim %v", sec, key, v, sj[sec][key])
				}
			}
		}
		t.Errorf("the JSON feature probes differ (%d sections on the kernel, %d under the shim)", len(kj), len(sj))
	}
}

// TestBpftoolFeatureProbeUnprivileged: `bpftool feature probe unprivileged` drops CAP_BPF,
// CAP_SYS_ADMIN, CAP_PERFMON and CAP_NET_ADMIN with capset(2) and probes what an ordinary user
// may do; under the shim it prints what it prints on the kernel (with the kernel's
// unprivileged_bpf_disabled set, as on Debian: bpf(2) refuses every call with EPERM).
func TestBpftoolFeatureProbeUnprivileged(t *testing.T) {
	e := Stage(t, "bpftool")
	b, err := os.ReadFile("/proc/sys/kernel/unprivileged_bpf_disabled")
	if err != nil || strings.TrimSpace(string(b)) == "0" {
		t.Skip("unprivileged bpf(2) is enabled here; ebpfu answers the tool as a privileged one")
	}
	for _, args := range [][]string{{"feature", "probe", "unprivileged"}, {"-j", "feature", "probe", "unprivileged"}} {
		argv := append([]string{"bpftool"}, args...)
		k := e.Kernel(t, 2*time.Minute, argv...)
		s := e.Shim(t, 2*time.Minute, argv...)
		if k.Code != 0 || len(k.Stdout) < 1000 {
			t.Fatalf("%v on the kernel:\n%s", args, k)
		}
		same(t, strings.Join(args, " "), k, s)
	}
}
