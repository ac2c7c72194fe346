package policysource

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

func newDirSource(t *testing.T, dir string) *Dir {
	t.Helper()
	d, err := NewDir(DirOptions{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDirFollowsWritesModificationsAndDeletions(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), testutil.BlockShellPolicy("a", "", "web"))
	c := newChanges()
	m := start(t, c, newDirSource(t, dir))

	// Start put the directory in force before returning.
	set := m.Current()
	if set.Generation != 1 || !slices.Equal(applying(set, "web"), []string{"a"}) {
		t.Fatalf("after Start: generation %d, applying %v", set.Generation, applying(set, "web"))
	}
	first := c.wait(t, "for the initial load", func(ch Change) bool { return ch.Err == nil })
	if first.Policies != 1 || first.Kind != KindDir || first.Location != dir || !strings.HasPrefix(first.Digest, "sha256:") {
		t.Fatalf("initial change = %+v", first)
	}

	// Modify: the selector moves from app=web to app=api.
	began := time.Now()
	writeFile(t, filepath.Join(dir, "a.yaml"), testutil.BlockShellPolicy("a", "", "api"))
	ch := c.wait(t, "after modifying a.yaml", func(ch Change) bool { return ch.Err == nil })
	t.Logf("modification in force %v after the write", time.Since(began))
	set = m.Current()
	if ch.Generation != set.Generation || ch.Digest == first.Digest {
		t.Fatalf("change %+v does not describe the set in force (generation %d)", ch, set.Generation)
	}
	if len(applying(set, "web")) != 0 || !slices.Equal(applying(set, "api"), []string{"a"}) {
		t.Fatalf("after modification: web %v, api %v", applying(set, "web"), applying(set, "api"))
	}

	// Add a file in a subdirectory.
	writeFile(t, filepath.Join(dir, "team", "b.yml"), testutil.BlockShellPolicy("b", "", "web"))
	ch = c.wait(t, "after adding team/b.yml", func(ch Change) bool { return ch.Err == nil })
	if ch.Policies != 2 || !slices.Equal(policyNames(m.Current()), []string{"a", "b"}) {
		t.Fatalf("after adding: change %+v, policies %v", ch, policyNames(m.Current()))
	}

	// Delete.
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	ch = c.wait(t, "after deleting a.yaml", func(ch Change) bool { return ch.Err == nil })
	if ch.Policies != 1 || !slices.Equal(policyNames(m.Current()), []string{"b"}) {
		t.Fatalf("after deleting: change %+v, policies %v", ch, policyNames(m.Current()))
	}

	// Deleting everything is a change too: no policy is in force.
	if err := os.RemoveAll(filepath.Join(dir, "team")); err != nil {
		t.Fatal(err)
	}
	ch = c.wait(t, "after emptying the directory", func(ch Change) bool { return ch.Err == nil })
	if ch.Policies != 0 || m.Current().Match.Len() != 0 {
		t.Fatalf("after emptying: change %+v, %d policies", ch, m.Current().Match.Len())
	}
}

func TestDirInvalidFileKeepsLastGoodSet(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), testutil.BlockShellPolicy("a", "", "web"))
	c := newChanges()
	m := start(t, c, newDirSource(t, dir))
	good := m.Current()

	writeFile(t, filepath.Join(dir, "b.yaml"), testutil.InvalidPolicy())
	ch := c.wait(t, "reporting the invalid file", func(ch Change) bool { return ch.Err != nil })
	if !strings.Contains(ch.Err.Error(), "b.yaml") || !strings.Contains(ch.Err.Error(), "actionn") {
		t.Errorf("error does not name the file and field: %v", ch.Err)
	}
	if m.Current() != good {
		t.Fatalf("the set changed although the directory is invalid")
	}
	st := m.Status()[0]
	if !st.Failing || !strings.Contains(st.LastError, "b.yaml") || st.LastErrorAt.IsZero() || st.Policies != 1 || st.Digest != good.Sources[0].Digest {
		t.Fatalf("status = %+v", st)
	}

	// Fixing the file puts both in force and clears the failure.
	writeFile(t, filepath.Join(dir, "b.yaml"), testutil.BlockShellPolicy("b", "", "web"))
	c.wait(t, "after fixing b.yaml", func(ch Change) bool { return ch.Err == nil && ch.Policies == 2 })
	if st := m.Status()[0]; st.Failing || st.Policies != 2 || st.LastSuccess.Before(st.LastErrorAt) {
		t.Fatalf("status after the fix = %+v", st)
	}
}

func TestDirIgnoresHiddenAndOtherFiles(t *testing.T) {
	dir := t.TempDir()
	c := newChanges()
	m := start(t, c, newDirSource(t, dir))
	if m.Current().Match.Len() != 0 {
		t.Fatal("policies in an empty directory")
	}
	// None of these is a policy file: an editor's swap file, a half-written temporary, a
	// hidden directory, a file of another extension.
	writeFile(t, filepath.Join(dir, ".a.yaml.swp"), testutil.InvalidPolicy())
	writeFile(t, filepath.Join(dir, ".tmp-123.yaml"), testutil.InvalidPolicy())
	writeFile(t, filepath.Join(dir, ".git", "x.yaml"), testutil.InvalidPolicy())
	writeFile(t, filepath.Join(dir, "README.md"), "# not a policy")
	// Then one that is: the first change must be this one alone, with no error before it.
	writeFile(t, filepath.Join(dir, "real.yaml"), testutil.BlockShellPolicy("real", "", "web"))
	ch := c.wait(t, "after adding real.yaml", func(ch Change) bool { return ch.Policies == 1 || ch.Err != nil })
	if ch.Err != nil || !slices.Equal(policyNames(m.Current()), []string{"real"}) {
		t.Fatalf("change %+v, policies %v", ch, policyNames(m.Current()))
	}
}

// TestDirConfigMapSwap follows a directory laid out as kubelet mounts a ConfigMap: visible
// names are links into ..data, which is itself a link swapped atomically on update.
func TestDirConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "..v1", "p.yaml"), testutil.BlockShellPolicy("p", "", "web"))
	writeFile(t, filepath.Join(dir, "..v2", "p.yaml"), testutil.BlockShellPolicy("p", "", "api"))
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(t, os.Symlink(filepath.Join("..data", "p.yaml"), filepath.Join(dir, "p.yaml")))

	c := newChanges()
	m := start(t, c, newDirSource(t, dir))
	if got := applying(m.Current(), "web"); !slices.Equal(got, []string{"p"}) || m.Current().Match.Len() != 1 {
		t.Fatalf("initial: applying %v of %d", got, m.Current().Match.Len())
	}
	c.wait(t, "initial load", func(ch Change) bool { return ch.Err == nil })

	must(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	c.wait(t, "after swapping ..data", func(ch Change) bool { return ch.Err == nil })
	if got := applying(m.Current(), "api"); !slices.Equal(got, []string{"p"}) {
		t.Fatalf("after the swap: applying %v", got)
	}
}

func TestDirMissingAtStartThenCreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	c := newChanges()
	m := start(t, c, newDirSource(t, dir))
	st := m.Status()[0]
	if !st.Failing || !strings.Contains(st.LastError, "no such file") || m.Current().Match.Len() != 0 {
		t.Fatalf("status with a missing directory = %+v", st)
	}
	writeFile(t, filepath.Join(dir, "a.yaml"), testutil.BlockShellPolicy("a", "", "web"))
	c.wait(t, "after creating the directory", func(ch Change) bool { return ch.Err == nil && ch.Policies == 1 })
	if st := m.Status()[0]; st.Failing || st.Policies != 1 {
		t.Fatalf("status = %+v", st)
	}
}

func TestDirBounds(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), testutil.BlockShellPolicy("a", "", "web"))
	writeFile(t, filepath.Join(dir, "b.yaml"), testutil.BlockShellPolicy("b", "", "web"))

	big, err := NewDir(DirOptions{Path: dir, MaxFileSize: 64})
	must(t, err)
	if _, err := big.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than the limit of 64 bytes") {
		t.Errorf("file size bound: %v", err)
	}
	many, err := NewDir(DirOptions{Path: dir, MaxFiles: 1})
	must(t, err)
	if _, err := many.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "more than 1 policy files") {
		t.Errorf("file count bound: %v", err)
	}
	total, err := NewDir(DirOptions{Path: dir, MaxTotalSize: int64(len(testutil.BlockShellPolicy("a", "", "web")) + 10)})
	must(t, err)
	if _, err := total.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "together") {
		t.Errorf("total size bound: %v", err)
	}
	notDir := filepath.Join(dir, "a.yaml")
	file, err := NewDir(DirOptions{Path: notDir})
	must(t, err)
	if _, err := file.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file as the directory: %v", err)
	}
}

// TestDirInPlaceWriteSettles writes a file in place in two halves: the half-written file is
// never put in force (it would be invalid), only the finished one.
func TestDirInPlaceWriteSettles(t *testing.T) {
	dir := t.TempDir()
	c := newChanges()
	d, err := NewDir(DirOptions{Path: dir, PollInterval: 20 * time.Millisecond})
	must(t, err)
	m := start(t, c, d)
	full := testutil.BlockShellPolicy("a", "", "web")
	f, err := os.Create(filepath.Join(dir, "a.yaml"))
	must(t, err)
	_, err = f.WriteString(full[:len(full)/2])
	must(t, err)
	must(t, f.Sync())
	// Whatever the poller saw meanwhile, the final state must be the complete file in force.
	_, err = f.WriteString(full[len(full)/2:])
	must(t, err)
	must(t, f.Close())
	c.wait(t, "with the complete file", func(ch Change) bool { return ch.Err == nil && ch.Policies == 1 })
	if !slices.Equal(applying(m.Current(), "web"), []string{"a"}) {
		t.Fatalf("applying %v", applying(m.Current(), "web"))
	}
}

// TestReadersNeverBlock reads and matches the current set from several goroutines while the
// directory changes; run with -race, it checks that swaps and reads share nothing mutable.
func TestReadersNeverBlock(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), testutil.BlockShellPolicy("a", "", "web"))
	c := newChanges()
	d, err := NewDir(DirOptions{Path: dir, PollInterval: 10 * time.Millisecond})
	must(t, err)
	m := start(t, c, d)

	stop := make(chan struct{})
	var readers sync.WaitGroup
	reads := make([]int, 4)
	for i := range reads {
		readers.Go(func() {
			ct := agentapi.Container{ID: "x", Namespace: "default", Labels: map[string]string{"app": "web"}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				set := m.Current()
				set.Match.Match(&ct)
				_ = m.Status()
				reads[i]++
			}
		})
	}
	for i := range 5 {
		app := []string{"api", "web"}[i%2] // each write differs from the one before
		writeFile(t, filepath.Join(dir, "a.yaml"), testutil.BlockShellPolicy("a", "", app))
		want := uint64(i + 2) // generation 1 is Start's
		c.wait(t, "after rewrite", func(ch Change) bool { return ch.Err == nil && ch.Generation == want })
	}
	close(stop)
	readers.Wait()
	for i, n := range reads {
		if n == 0 {
			t.Errorf("reader %d never read", i)
		}
	}
	if g := m.Current().Generation; g < 6 {
		t.Errorf("generation %d after five changes", g)
	}
}

func TestManagerRefusesDuplicateSources(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewManager(Options{}, newDirSource(t, dir), newDirSource(t, dir+"/")); err == nil {
		t.Fatal("the same directory twice was accepted")
	}
}

func TestManagerReportsDuplicatePolicies(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(a, "p.yaml"), testutil.BlockShellPolicy("same", "", "web"))
	writeFile(t, filepath.Join(b, "p.yaml"), testutil.BlockShellPolicy("same", "", "api"))
	m := start(t, newChanges(), newDirSource(t, a), newDirSource(t, b))
	set := m.Current()
	if !slices.Equal(set.Duplicates, []string{"KubeArmorPolicy/default/same"}) || set.Match.Len() != 2 {
		t.Fatalf("duplicates %v, %d policies", set.Duplicates, set.Match.Len())
	}
	if len(set.Sources) != 2 || set.Sources[0].Location != a || set.Sources[1].Policies != 1 {
		t.Fatalf("sources = %+v", set.Sources)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
