package server

// command is one bpf(2) command: its kernel name, the end offset of its last attr field (the
// kernel's CMD_LAST_FIELD: every byte after it must be zero) and its handler.
type command struct {
	name string
	last int
	run  func(s *Server, c *call) (Result, error)
}

// commands is the bpf(2) command table, indexed by the kernel's enum bpf_cmd (Linux 6.18).
var commands = [...]command{
	0:  {"BPF_MAP_CREATE", 92, (*Server).mapCreate},
	1:  {"BPF_MAP_LOOKUP_ELEM", 32, (*Server).mapLookup},
	2:  {"BPF_MAP_UPDATE_ELEM", 32, (*Server).mapUpdate},
	3:  {"BPF_MAP_DELETE_ELEM", 16, (*Server).mapDelete},
	4:  {"BPF_MAP_GET_NEXT_KEY", 24, (*Server).mapGetNextKey},
	5:  {"BPF_PROG_LOAD", 168, (*Server).progLoad},
	6:  {"BPF_OBJ_PIN", 20, (*Server).objPin},
	7:  {"BPF_OBJ_GET", 20, (*Server).objGet},
	8:  {"BPF_PROG_ATTACH", 32, notSupported},
	9:  {"BPF_PROG_DETACH", 32, notSupported},
	10: {"BPF_PROG_TEST_RUN", 76, (*Server).progTestRun},
	11: {"BPF_PROG_GET_NEXT_ID", 8, nextID(KindProg)},
	12: {"BPF_MAP_GET_NEXT_ID", 8, nextID(KindMap)},
	13: {"BPF_PROG_GET_FD_BY_ID", 4, (*Server).progGetFDByID},
	14: {"BPF_MAP_GET_FD_BY_ID", 12, (*Server).mapGetFDByID},
	15: {"BPF_OBJ_GET_INFO_BY_FD", 16, (*Server).objGetInfoByFD},
	16: {"BPF_PROG_QUERY", 64, notSupported},
	17: {"BPF_RAW_TRACEPOINT_OPEN", 24, (*Server).rawTracepointOpen},
	18: {"BPF_BTF_LOAD", 40, (*Server).btfLoad},
	19: {"BPF_BTF_GET_FD_BY_ID", 16, (*Server).btfGetFDByID},
	20: {"BPF_TASK_FD_QUERY", 48, (*Server).taskFDQuery},
	21: {"BPF_MAP_LOOKUP_AND_DELETE_ELEM", 32, (*Server).mapLookupAndDelete},
	22: {"BPF_MAP_FREEZE", 4, (*Server).mapFreeze},
	23: {"BPF_BTF_GET_NEXT_ID", 8, nextID(KindBTF)},
	24: {"BPF_MAP_LOOKUP_BATCH", 56, (*Server).mapLookupBatchCmd},
	25: {"BPF_MAP_LOOKUP_AND_DELETE_BATCH", 56, (*Server).mapLookupDeleteBatchCmd},
	26: {"BPF_MAP_UPDATE_BATCH", 56, (*Server).mapUpdateBatchCmd},
	27: {"BPF_MAP_DELETE_BATCH", 56, (*Server).mapDeleteBatchCmd},
	28: {"BPF_LINK_CREATE", 60, (*Server).linkCreate},
	29: {"BPF_LINK_UPDATE", 16, notSupported},
	30: {"BPF_LINK_GET_FD_BY_ID", 4, (*Server).linkGetFDByID},
	31: {"BPF_LINK_GET_NEXT_ID", 8, nextID(KindLink)},
	32: {"BPF_ENABLE_STATS", 4, notSupported},
	33: {"BPF_ITER_CREATE", 8, notSupported},
	34: {"BPF_LINK_DETACH", 4, notSupported},
	35: {"BPF_PROG_BIND_MAP", 12, (*Server).progBindMap},
	36: {"BPF_TOKEN_CREATE", 8, notSupported},
	37: {"BPF_PROG_STREAM_READ_BY_FD", 20, notSupported},
}

// CommandName returns the kernel's name of bpf command cmd, for reports.
func CommandName(cmd uint32) string {
	if cmd < uint32(len(commands)) {
		return commands[cmd].name
	}
	return "unknown command"
}
