package runcwrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// EnvRuntime names the environment variable that points the wrapper at the real runtime
// (a path, or a name looked up on PATH). It wins over the config file.
const EnvRuntime = "KARMOR_RUNC"

// DefaultRuntime is the runtime the wrapper execs when neither KARMOR_RUNC nor the config names one.
const DefaultRuntime = "runc"

// ErrRuntimeIsSelf is returned when the only runtime found is the wrapper itself, which would
// exec itself forever.
var ErrRuntimeIsSelf = errors.New("the real runtime resolves to karmor-runc itself")

// ResolveRuntime returns the absolute path of the runtime to exec. want is a path or a command
// name (DefaultRuntime when empty); a name is looked up on pathEnv (the PATH value) skipping any
// entry that is the wrapper itself (self, typically /proc/self/exe), so that installing the
// wrapper as "runc" earlier on PATH still reaches the real runc behind it.
func ResolveRuntime(want, pathEnv, self string) (string, error) {
	if want == "" {
		want = DefaultRuntime
	}
	selfInfo, selfErr := os.Stat(self)
	isSelf := func(fi os.FileInfo) bool { return selfErr == nil && os.SameFile(fi, selfInfo) }

	if strings.Contains(want, "/") {
		fi, err := os.Stat(want)
		if err != nil {
			return "", fmt.Errorf("runtime %s: %w", want, err)
		}
		if isSelf(fi) {
			return "", fmt.Errorf("%w (%s); set %s to the real runc", ErrRuntimeIsSelf, want, EnvRuntime)
		}
		if !isExecutable(fi) {
			return "", fmt.Errorf("runtime %s is not an executable file", want)
		}
		return filepath.Abs(want)
	}
	sawSelf := false
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // a relative PATH entry would depend on the caller's cwd; runc never needs one
		}
		p := filepath.Join(dir, want)
		fi, err := os.Stat(p)
		if err != nil || !isExecutable(fi) {
			continue
		}
		if isSelf(fi) {
			sawSelf = true
			continue
		}
		return p, nil
	}
	if sawSelf {
		return "", fmt.Errorf("%w: every %q on PATH is the wrapper; set %s to the real runc", ErrRuntimeIsSelf, want, EnvRuntime)
	}
	return "", fmt.Errorf("runtime %q not found on PATH (%s); install runc or set %s", want, pathEnv, EnvRuntime)
}

func isExecutable(fi os.FileInfo) bool { return fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 }
