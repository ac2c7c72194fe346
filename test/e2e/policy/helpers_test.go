package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// deadline bounds every wait. It is generous on purpose: the tests wait for things to happen,
// they do not time them.
const deadline = 30 * time.Second

// interval is karmord's --policy-interval in these tests.
const interval = "300ms"

// policyDir writes files (name, content pairs) into a new directory.
func policyDir(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for i := 0; i+1 < len(files); i += 2 {
		writeAtomically(t, filepath.Join(dir, files[i]), files[i+1])
	}
	return dir
}

// writeAtomically replaces a file as editors and config managers do: temp file, rename.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// isolatedEnv is the environment of the programs the tests run: no Docker credentials or
// plain-HTTP setting of the machine's.
func isolatedEnv(t *testing.T) []string {
	return append(os.Environ(), "DOCKER_CONFIG="+t.TempDir(), "KARMOR_OCI_TLS_INSECURE=")
}

// karmor runs the built karmor CLI and returns its exit code, stdout and stderr.
func karmor(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(testutil.Binary(t, "karmor"), args...)
	cmd.Env = isolatedEnv(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run karmor: %v", err)
	}
	return code, stdout.String(), stderr.String()
}

// push pushes files (name, content pairs) to ref with `karmor oci push` and returns the
// manifest digest it printed.
func push(t *testing.T, ref string, skipValidate bool, files ...string) string {
	t.Helper()
	args := []string{"oci", "push", "-i", ref, "-f", policyDir(t, files...), "--plain-http"}
	if skipValidate {
		args = append(args, "--skip-validate")
	}
	code, out, errOut := karmor(t, args...)
	if code != 0 {
		t.Fatalf("karmor %v: exit %d: %s", args, code, errOut)
	}
	_, digest, ok := strings.Cut(strings.TrimSpace(out), "@")
	if !ok {
		t.Fatalf("karmor oci push printed %q, want REF@DIGEST", out)
	}
	return digest
}

// karmord is a real karmord (see testutil.Karmord) with the policy checks of these tests.
type karmord struct {
	*testutil.Karmord
}

// newKarmord prepares a karmord with extra flags, in the programs' isolated environment; it is
// not started. runtimeRoot is the runc state root it reconciles with ("" for none).
func newKarmord(t *testing.T, runtimeRoot string, extra ...string) *karmord {
	t.Helper()
	opts := testutil.KarmordOptions{Args: extra, Env: isolatedEnv(t)}
	if runtimeRoot != "" {
		opts.RuntimeRoots = []string{runtimeRoot}
	}
	return &karmord{testutil.NewKarmord(t, opts)}
}

// policyState is `karmor policy list -o json`.
func (k *karmord) policyState(t *testing.T) agentapi.PolicyState {
	t.Helper()
	var s agentapi.PolicyState
	k.cliJSON(t, &s, "policy", "list", "-o", "json")
	return s
}

// containerPolicies is what `karmor containers -o json` says applies to each container, by id.
func (k *karmord) containerPolicies(t *testing.T) map[string][]string {
	t.Helper()
	var list []struct {
		ID       string   `json:"id"`
		Policies []string `json:"policies"`
	}
	k.cliJSON(t, &list, "containers", "-o", "json")
	out := map[string][]string{}
	for _, c := range list {
		out[c.ID] = c.Policies
	}
	return out
}

func (k *karmord) cliJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	args = append(args, "--socket", k.Socket)
	code, out, errOut := karmor(t, args...)
	if code != 0 {
		t.Fatalf("karmor %v: exit %d: %s", args, code, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("karmor %v: %v\n%s", args, err, out)
	}
}

// waitPolicies waits until `karmor containers -o json` says exactly want applies to container
// id, and returns how long that took.
func (k *karmord) waitPolicies(t *testing.T, id string, want ...string) time.Duration {
	t.Helper()
	began := time.Now()
	until := began.Add(deadline)
	for {
		got := k.containerPolicies(t)[id]
		if slices.Equal(got, want) {
			return time.Since(began)
		}
		if time.Now().After(until) {
			t.Fatalf("%s's policies stayed %q, want %q; policy state: %+v", id, got, want, k.policyState(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSource waits until the first policy source satisfies cond, and returns it.
func (k *karmord) waitSource(t *testing.T, what string, cond func(agentapi.PolicySource) bool) agentapi.PolicySource {
	t.Helper()
	until := time.Now().Add(deadline)
	for {
		s := k.policyState(t)
		if len(s.Sources) > 0 && cond(s.Sources[0]) {
			return s.Sources[0]
		}
		if time.Now().After(until) {
			t.Fatalf("timed out waiting for %s; sources: %+v", what, s.Sources)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// report sends karmord the start of a container outside Kubernetes with the annotations that
// karmor-hook would read from its config.json.
func (k *karmord) report(t *testing.T, id string, annotations map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	ev := &agentapi.Event{Kind: agentapi.KindStart, Stage: "createRuntime", Time: time.Now(),
		Container: agentapi.Container{ID: id, PID: 1, Name: annotations["kubearmor.io/container.name"], Annotations: annotations}}
	if _, err := k.Client.Report(ctx, ev); err != nil {
		t.Fatal(err)
	}
}

// watchLog runs `karmor containers -w -o json` against k until the test ends and collects its
// lines.
type watchLog struct {
	mu    sync.Mutex
	lines []map[string]any
	buf   bytes.Buffer
}

func (w *watchLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadBytes('\n')
		if err != nil {
			w.buf.Write(line) // an incomplete line: keep it for the next write
			return len(p), nil
		}
		var v map[string]any
		if json.Unmarshal(line, &v) == nil {
			w.lines = append(w.lines, v)
		}
	}
}

func (k *karmord) watch(t *testing.T) *watchLog {
	t.Helper()
	w := &watchLog{}
	cmd := exec.Command(testutil.Binary(t, "karmor"), "containers", "-w", "-o", "json", "--socket", k.Socket)
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	return w
}

// wait returns the first line that satisfies ok, waiting for it.
func (w *watchLog) wait(t *testing.T, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	until := time.Now().Add(deadline)
	for {
		w.mu.Lock()
		for _, l := range w.lines {
			if ok(l) {
				w.mu.Unlock()
				return l
			}
		}
		n := len(w.lines)
		w.mu.Unlock()
		if time.Now().After(until) {
			t.Fatalf("the watch never showed %s (%d lines)", what, n)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// policyChange returns a watch line's policy change, if it is one.
func policyChange(l map[string]any) map[string]any {
	pc, _ := l["policy_change"].(map[string]any)
	return pc
}
