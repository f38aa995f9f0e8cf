package conformance

import (
	"os"
	"path/filepath"
)

// DirEnv names the environment variable that overrides where the test files are.
const DirEnv = "EBPFU_CONFORMANCE_DIR"

// FindDir returns the directory of the bpf_conformance test files: $EBPFU_CONFORMANCE_DIR when
// set, else ../shared/conformance/tests relative to the root of the module that holds the
// current directory. ok is false when the directory does not exist.
func FindDir() (dir string, ok bool) {
	if d := os.Getenv(DirEnv); d != "" {
		return d, isDir(d)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			t := filepath.Join(d, "..", "shared", "conformance", "tests")
			return t, isDir(t)
		}
		if filepath.Dir(d) == d {
			return "", false
		}
	}
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
