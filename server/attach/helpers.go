package attach

// AgentHelpers lists the helpers the agent (cshim/helpers.c) implements for programs in traced
// processes. A program that calls another one cannot run there: the server refuses to attach it
// (program.Program.Helpers lists what a program calls). get_current_task is not one: the
// kernel's task_struct cannot be read from a traced process, and a program that reads fields
// of a task it got (bpftrace's curtask->tgid) would print zeros instead of failing.
var AgentHelpers = []int32{
	1, 2, 3, // map_lookup_elem, map_update_elem, map_delete_elem
	4, 45, 112, 113, 114, 115, // probe_read, probe_read_str, probe_read_{user,kernel}[_str]
	5, 125, 160, 208, 118, // ktime_get_ns, _boot_ns, _coarse_ns, _tai_ns, jiffies64
	6,    // trace_printk (its output goes nowhere: trace_pipe has no reader here)
	7, 8, // get_prandom_u32, get_smp_processor_id
	14, 15, 16, // get_current_pid_tgid, get_current_uid_gid, get_current_comm
	42, 80, // get_numa_node_id (0), get_current_cgroup_id
	109, 117, // send_signal, send_signal_thread
	25, 27, 67, // perf_event_output, get_stackid, get_stack
	130, 131, 132, 133, 134, // ringbuf output, reserve, submit, discard, query
	173, 174, // get_func_ip, get_attach_cookie
}

// Unsupported returns the helpers p calls that the agent lacks.
func Unsupported(calls []int32) []int32 {
	var out []int32
	for _, c := range calls {
		found := false
		for _, h := range AgentHelpers {
			if h == c {
				found = true
				break
			}
		}
		if !found {
			out = append(out, c)
		}
	}
	return out
}
