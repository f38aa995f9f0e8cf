package helper

// Helper numbers the runtime implements or the verifier treats specially.
const (
	MapLookupElem      ID = 1
	MapUpdateElem      ID = 2
	MapDeleteElem      ID = 3
	ProbeRead          ID = 4
	KtimeGetNS         ID = 5
	TracePrintk        ID = 6
	GetPrandomU32      ID = 7
	GetSmpProcessorID  ID = 8
	TailCall           ID = 12
	GetCurrentPidTgid  ID = 14
	GetCurrentUIDGid   ID = 15
	GetCurrentComm     ID = 16
	PerfEventRead      ID = 22
	PerfEventOutput    ID = 25
	GetStackID         ID = 27
	GetCurrentTask     ID = 35
	ProbeReadStr       ID = 45
	GetStack           ID = 67
	MapPushElem        ID = 87
	MapPopElem         ID = 88
	MapPeekElem        ID = 89
	SendSignal         ID = 109
	ProbeReadUser      ID = 112
	ProbeReadKernel    ID = 113
	ProbeReadUserStr   ID = 114
	ProbeReadKernelStr ID = 115
	SendSignalThread   ID = 117
	JiffiesGet         ID = 118
	KtimeGetBootNS     ID = 125
	RingbufOutput      ID = 130
	RingbufReserve     ID = 131
	RingbufSubmit      ID = 132
	RingbufDiscard     ID = 133
	RingbufQuery       ID = 134
	GetCurrentTaskBTF  ID = 158
	KtimeGetCoarseNS   ID = 160
	Snprintf           ID = 165
	Loop               ID = 181
	Strncmp            ID = 182
	GetFuncIP          ID = 173
	GetAttachCookie    ID = 174
	KtimeGetTaiNS      ID = 208
)

// protos holds the prototypes the runtime knows, as the kernel's bpf_func_proto gives them.
var protos = map[ID]*Proto{}

func init() {
	def := func(id ID, ret RetKind, gpl bool, args ...ArgKind) {
		p := &Proto{ID: id, Name: Name(id), Ret: ret, GPLOnly: gpl}
		copy(p.Args[:], args)
		protos[id] = p
	}
	def(MapLookupElem, RetMapValueOrNull, false, ArgConstMapPtr, ArgPtrToMapKey)
	def(MapUpdateElem, RetInteger, false, ArgConstMapPtr, ArgPtrToMapKey, ArgPtrToMapValue, ArgAnything)
	def(MapDeleteElem, RetInteger, false, ArgConstMapPtr, ArgPtrToMapKey)
	def(MapPushElem, RetInteger, false, ArgConstMapPtr, ArgPtrToMapValue, ArgAnything)
	def(MapPopElem, RetInteger, false, ArgConstMapPtr, ArgPtrToUninitMapValue)
	def(MapPeekElem, RetInteger, false, ArgConstMapPtr, ArgPtrToUninitMapValue)
	def(ProbeRead, RetInteger, true, ArgPtrToUninitMem, ArgConstSizeOrZero, ArgAnything)
	def(ProbeReadStr, RetInteger, true, ArgPtrToUninitMem, ArgConstSizeOrZero, ArgAnything)
	def(ProbeReadUser, RetInteger, true, ArgPtrToUninitMem, ArgConstSizeOrZero, ArgAnything)
	def(ProbeReadKernel, RetInteger, true, ArgPtrToUninitMem, ArgConstSizeOrZero, ArgAnything)
	def(ProbeReadUserStr, RetInteger, true, ArgPtrToUninitMem, ArgConstSizeOrZero, ArgAnything)
	def(ProbeReadKernelStr, RetInteger, true, ArgPtrToUninitMem, ArgConstSizeOrZero, ArgAnything)
	def(KtimeGetNS, RetInteger, false)
	def(KtimeGetBootNS, RetInteger, false)
	def(KtimeGetCoarseNS, RetInteger, false)
	def(KtimeGetTaiNS, RetInteger, false)
	def(JiffiesGet, RetInteger, false)
	def(TracePrintk, RetInteger, true, ArgPtrToMem, ArgConstSize)
	def(GetPrandomU32, RetInteger, false)
	def(GetSmpProcessorID, RetInteger, false)
	def(TailCall, RetVoid, false, ArgPtrToCtx, ArgConstMapPtr, ArgAnything)
	def(GetCurrentPidTgid, RetInteger, false)
	def(GetCurrentUIDGid, RetInteger, false)
	def(GetCurrentComm, RetInteger, false, ArgPtrToUninitMem, ArgConstSize)
	def(GetCurrentTask, RetInteger, true)
	def(PerfEventRead, RetInteger, true, ArgConstMapPtr, ArgAnything)
	def(PerfEventOutput, RetInteger, true, ArgPtrToCtx, ArgConstMapPtr, ArgAnything, ArgPtrToMem, ArgConstSizeOrZero)
	def(GetStackID, RetInteger, true, ArgPtrToCtx, ArgConstMapPtr, ArgAnything)
	def(GetStack, RetInteger, true, ArgPtrToCtx, ArgPtrToUninitMem, ArgConstSizeOrZero, ArgAnything)
	def(SendSignal, RetInteger, false, ArgAnything)
	def(SendSignalThread, RetInteger, false, ArgAnything)
	def(RingbufOutput, RetInteger, false, ArgConstMapPtr, ArgPtrToMem, ArgConstSizeOrZero, ArgAnything)
	def(RingbufReserve, RetAllocMemOrNull, false, ArgConstMapPtr, ArgConstAllocSizeOrZero, ArgAnything)
	def(RingbufSubmit, RetVoid, false, ArgPtrToAllocMem, ArgAnything)
	def(RingbufDiscard, RetVoid, false, ArgPtrToAllocMem, ArgAnything)
	def(RingbufQuery, RetInteger, false, ArgConstMapPtr, ArgAnything)
	def(Snprintf, RetInteger, false, ArgPtrToUninitMemOrNull, ArgConstSizeOrZero, ArgPtrToConstStr, ArgPtrToMemOrNull, ArgConstSizeOrZero)
	def(Loop, RetInteger, false, ArgAnything, ArgPtrToFunc, ArgPtrToStackOrNull, ArgAnything)
	def(Strncmp, RetInteger, false, ArgPtrToMem, ArgConstSize, ArgPtrToConstStr)
	def(GetFuncIP, RetInteger, false, ArgPtrToCtx)
	def(GetAttachCookie, RetInteger, false, ArgPtrToCtx)
}

// kernelSig is what the reference kernel's prototype of a helper says of its first arguments,
// as its answers to probes show: the types it wants for r1 when the context does not do, whether
// it reads r2, whether it may sleep, whether it returns a kernel object.
type kernelSig struct {
	expected  string
	arg2      bool
	sleepable bool
	retBTF    bool
	denied    string
}

//go:generate go run gen_kernel.go ../../../shared/surface/traces/p_g8_feature_probe.snoop.gz

// Lookup returns the prototype of helper id: the runtime's own, or else an approximate one made
// from what the reference kernel's answers to feature probes show.
func Lookup(id ID) (*Proto, bool) {
	if p, ok := protos[id]; ok {
		return p, ok
	}
	s, ok := kernelSigs[id]
	if !ok {
		return nil, false
	}
	return approximate(id, s), true
}

// lookupForType is Lookup for a program of kernel type progType, whose kernel prototype of a
// helper may differ from other types'.
func lookupForType(progType uint32, id ID) (*Proto, bool) {
	if p, ok := protos[id]; ok {
		return p, ok
	}
	if s, ok := kernelTypeSigs[[2]int32{int32(progType), int32(id)}]; ok {
		return approximate(id, s), true
	}
	return Lookup(id)
}

// approximate makes a prototype from what the kernel's answers show of a helper.
func approximate(id ID, s kernelSig) *Proto {
	p := &Proto{ID: id, Name: Name(id), Ret: RetInteger, Sleepable: s.sleepable, Denied: s.denied, Approximate: true}
	switch {
	case s.expected != "":
		p.Args[0], p.Expected[0] = ArgOpaque, s.expected
	case s.arg2:
		p.Args[0], p.Args[1] = ArgAnything, ArgAnything
	}
	if s.retBTF {
		p.Ret = RetPtrToBTF
	}
	return p
}

// Allowed reports whether a program of kernel type progType may call helper id, as the
// reference kernel decides.
func Allowed(progType uint32, id ID) bool {
	for _, x := range kernelTypes[progType] {
		if x == id {
			return true
		}
	}
	return false
}

// ForType returns a table of every helper a program of kernel type progType may call, with
// the implementations impl offers (a nil Func where it has none).
func ForType(progType uint32, impl map[ID]Func) *Table {
	t := NewTable()
	for _, id := range kernelTypes[progType] {
		if p, ok := lookupForType(progType, id); ok {
			t.impls[id] = Impl{Proto: p, Fn: impl[id]}
		}
	}
	return t
}

// Name returns the kernel's name of helper id ("bpf_map_lookup_elem"), or "" for a number the
// reference kernel does not know.
func Name(id ID) string {
	if id < 0 || id >= MaxID {
		return ""
	}
	return names[id]
}
