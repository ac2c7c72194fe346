package policysource

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// waitTimeout is how long a test waits for a notification. It is generous on purpose: the
// tests wait for events, they do not time them.
const waitTimeout = 15 * time.Second

// changes collects a Manager's notifications for a test.
type changes chan Change

func newChanges() changes { return make(changes, 1000) }

func (c changes) onChange(ch Change) { c <- ch }

// wait returns the first notification that satisfies ok, failing the test after waitTimeout.
func (c changes) wait(t *testing.T, what string, ok func(Change) bool) Change {
	t.Helper()
	deadline := time.After(waitTimeout)
	var seen []Change
	for {
		select {
		case ch := <-c:
			if ok(ch) {
				return ch
			}
			seen = append(seen, ch)
		case <-deadline:
			t.Fatalf("no notification %s within %s; saw %+v", what, waitTimeout, seen)
		}
	}
}

// start runs a Manager for the test and stops it when the test ends.
func start(t *testing.T, c changes, sources ...Source) *Manager {
	t.Helper()
	m, err := NewManager(Options{OnChange: c.onChange, Logger: slog.New(slog.DiscardHandler)}, sources...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.Start(ctx)
	t.Cleanup(func() { cancel(); m.Wait() })
	return m
}

// names returns the names of the set's policies that apply to a default-namespace pod
// labelled app=<app>.
func applying(s *Set, app string) []string {
	c := agentapi.Container{ID: "c1", Namespace: "default", Pod: "p", Labels: map[string]string{"app": app}}
	var out []string
	for _, p := range s.Match.Match(&c) {
		out = append(out, p.Name)
	}
	return out
}

func policyNames(s *Set) []string {
	var out []string
	for _, p := range s.Match.Policies() {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Written beside and renamed, as editors and `karmor oci pull` do, so a poll never reads
	// half a file; in-place writes are covered by the settle logic and its own test.
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
