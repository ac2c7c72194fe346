package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Runc drives the real runc with a private state root (--root), so that the test's containers
// are apart from the host's and from other tests'.
type Runc struct {
	Root string

	t              testing.TB
	cleanupOnFirst sync.Once
}

// NewRunc skips loudly unless root with runc installed, and returns a runc whose root is a new
// directory; its containers are deleted when the test ends.
func NewRunc(t testing.TB) *Runc {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "runc", "apt-get install runc")
	root, err := os.MkdirTemp("", "runc-")
	if err != nil {
		t.Fatal(err)
	}
	r := &Runc{Root: root, t: t}
	t.Cleanup(func() {
		r.deleteAll()
		_ = os.RemoveAll(root)
	})
	return r
}

// deleteAll force-deletes every container under the root; their poststop hooks run.
func (r *Runc) deleteAll() {
	entries, _ := os.ReadDir(r.Root) // one directory per container
	for _, e := range entries {
		_ = exec.Command("runc", "--root", r.Root, "delete", "--force", e.Name()).Run()
	}
}

// Run runs runc with args and returns its combined output; the error carries the output too.
// The output goes through a file, not a pipe: a detached container inherits runc's stdout and
// would hold a pipe open.
func (r *Runc) Run(args ...string) (string, error) {
	// Containers are deleted again when the test ends, but first, before the cleanups of what
	// was set up after NewRunc (a karmord whose spool dir the containers' poststop hooks write
	// to): cleanups run last-registered first, and this one is registered now.
	r.cleanupOnFirst.Do(func() { r.t.Cleanup(r.deleteAll) })
	out, err := os.CreateTemp("", "runc-out-")
	if err != nil {
		return "", err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runc", append([]string{"--root", r.Root}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	if err != nil {
		return string(b), fmt.Errorf("runc %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return string(b), nil
}

// Must is Run failing the test on error.
func (r *Runc) Must(t testing.TB, args ...string) string {
	t.Helper()
	out, err := r.Run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RuncEntry is one container of `runc list --format json`.
type RuncEntry struct {
	ID     string `json:"id"`
	PID    int    `json:"pid"`
	Status string `json:"status"`
}

// List returns every container runc knows under the root, by id.
func (r *Runc) List(t testing.TB) map[string]RuncEntry {
	t.Helper()
	out, err := exec.Command("runc", "--root", r.Root, "list", "--format", "json").Output()
	if err != nil {
		t.Fatalf("runc list: %v", err)
	}
	var entries []RuncEntry
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("runc list: %v\n%s", err, out)
	}
	m := map[string]RuncEntry{}
	for _, e := range entries {
		m[e.ID] = e
	}
	return m
}
