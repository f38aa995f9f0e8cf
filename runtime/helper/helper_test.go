package helper

import "testing"

func TestNamesAndPrototypes(t *testing.T) {
	if got := Name(MapLookupElem); got != "bpf_map_lookup_elem" {
		t.Errorf("Name(1) = %q", got)
	}
	if Name(-1) != "" || Name(MaxID) != "" {
		t.Error("names outside the kernel's numbers")
	}
	p, ok := Lookup(ProbeReadUserStr)
	if !ok || p.Approximate || p.Args[0] != ArgPtrToUninitMem || !p.GPLOnly {
		t.Errorf("probe_read_user_str: %+v", p)
	}
	// A helper the runtime has no prototype of gets the kernel's first argument.
	p, ok = Lookup(46) // bpf_get_socket_cookie
	if !ok || !p.Approximate {
		t.Fatalf("get_socket_cookie: %+v %v", p, ok)
	}
}

func TestAllowedByType(t *testing.T) {
	const kprobe, socketFilter = 2, 1
	if !Allowed(kprobe, ProbeReadUser) || !Allowed(kprobe, GetStackID) {
		t.Error("kprobes may call probe_read_user and get_stackid")
	}
	if Allowed(socketFilter, ProbeRead) {
		t.Error("socket filters may not call probe_read")
	}
	impl := map[ID]Func{KtimeGetNS: func(*Env, *[5]uint64) (uint64, error) { return 1, nil }}
	tab := ForType(kprobe, impl)
	if got, ok := tab.Get(KtimeGetNS); !ok || got.Fn == nil {
		t.Error("ForType lost an implementation")
	}
	if got, ok := tab.Get(MapLookupElem); !ok || got.Fn != nil || got.Proto.Args[0] != ArgConstMapPtr {
		t.Errorf("ForType: map_lookup_elem %+v %v", got, ok)
	}
	if _, ok := tab.Get(ProbeReadUser + 1000); ok {
		t.Error("ForType offers an unknown helper")
	}
	if err := NewTable().Register(MaxID+5, nil); err == nil {
		t.Error("Register accepted a helper without a prototype")
	}
}
