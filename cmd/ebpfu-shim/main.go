// Command ebpfu-shim runs a stock eBPF tool with its bpf(2), perf_event_open(2) and related
// calls served in user space: no root, no CAP_BPF, no kernel eBPF.
//
//	ebpfu-shim TOOL [ARGS...]    run TOOL under the supervisor
//	ebpfu-shim run -- CMD...     run CMD as a traced workload
//
// The shim's exit status is the tool's; a tool killed by a signal kills the shim with it.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/ebpfu/ebpfu/server"
	"github.com/ebpfu/ebpfu/server/attach"
	"github.com/ebpfu/ebpfu/shim"
)

const usage = `usage: ebpfu-shim TOOL [ARGS...]
       ebpfu-shim run -- CMD [ARGS...]`

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == shim.InitArg {
		os.Exit(shim.Init(args[1:]))
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if args[0] == "run" {
		os.Exit(runWorkload(args[1:]))
	}
	os.Exit(runTool(args))
}

// runTool runs a tool under the supervisor and returns its exit status.
func runTool(argv []string) int {
	srv, err := server.New(server.Config{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ebpfu-shim: %v\n", err)
		return 1
	}
	// The tool's workloads (bpftrace -c) are traced processes: the agent is preloaded through
	// the tool's environment, and stays out of the tool itself (shim.ToolPIDEnv).
	var env []string
	if agent, err := attach.AgentPath(); err == nil {
		env = attach.TracedEnv(os.Environ(), agent, "")
	}
	st, err := shim.Run(shim.Config{Argv: argv, Server: srv, Env: env})
	srv.Close() // detaches the tool's uprobes
	if err != nil {
		fmt.Fprintf(os.Stderr, "ebpfu-shim: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) {
			return 127
		}
		return 126
	}
	return exitStatus(st)
}

// runWorkload runs a workload as a traced process: the agent (bin/libebpfu.so) preloaded, so
// that the probes of every tool of the user apply to it and its descendants.
func runWorkload(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	agent, err := attach.AgentPath()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ebpfu-shim: %v\n", err)
		return 126
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = attach.TracedEnv(os.Environ(), agent, "")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "ebpfu-shim: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) {
			return 127
		}
		return 126
	}
	cmd.Wait()
	return exitStatus(cmd.ProcessState)
}

// exitStatus returns the exit status of st; for a tool killed by a signal it kills the shim
// with the same signal, so the shim's parent sees what it would have seen of the tool.
func exitStatus(st *os.ProcessState) int {
	ws, ok := st.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		sig := ws.Signal()
		signal.Reset(sig)
		syscall.Kill(os.Getpid(), sig)
		// The signal reaches some thread of the process soon; wait for it rather than exit.
		time.Sleep(time.Second)
		return 128 + int(sig)
	}
	return st.ExitCode()
}
