package attach

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// AgentName is the file name of the agent (built by `make` into bin/, beside ebpfu-shim).
const AgentName = "libebpfu.so"

// AgentPath returns the agent to preload into traced processes: $EBPFU_AGENT when set, else
// libebpfu.so beside the running executable.
func AgentPath() (string, error) {
	if p := os.Getenv("EBPFU_AGENT"); p != "" {
		return checkAgent(p)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("agent: %w", err)
	}
	return checkAgent(filepath.Join(filepath.Dir(exe), AgentName))
}

func checkAgent(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("agent: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("the agent %s is missing (make builds it): %w", abs, err)
	}
	return abs, nil
}

// TracedEnv returns env made for a traced process: the agent first in LD_PRELOAD (the host's
// own preloads after it), and EBPFU_STATE_DIR when stateDir is not "" (agents otherwise find
// the per-user directory as the server does).
func TracedEnv(env []string, agent, stateDir string) []string {
	out := make([]string, 0, len(env)+2)
	preload := agent
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "LD_PRELOAD="):
			for _, p := range strings.FieldsFunc(kv[len("LD_PRELOAD="):], func(r rune) bool { return r == ':' || r == ' ' }) {
				if p != agent {
					preload += ":" + p
				}
			}
		case strings.HasPrefix(kv, "EBPFU_STATE_DIR=") && stateDir != "":
		default:
			out = append(out, kv)
		}
	}
	out = append(out, "LD_PRELOAD="+preload)
	if stateDir != "" {
		out = append(out, "EBPFU_STATE_DIR="+stateDir)
	}
	return out
}
