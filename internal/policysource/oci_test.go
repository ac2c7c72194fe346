package policysource

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/registrytest"
	"github.com/karmor/karmor/internal/testutil"
)

// transport reaches the test registry over plain HTTP and gives up quickly once it is gone.
var transport = oci.TransportOptions{
	PlainHTTP: true,
	Retry:     oci.RetryOptions{MaxRetries: 1, MinWait: 10 * time.Millisecond, MaxWait: 20 * time.Millisecond},
}

// push pushes files (name, content pairs) to ref with `karmor oci push`'s code and returns the
// manifest digest.
func push(t *testing.T, ref string, skipValidate bool, files ...string) string {
	t.Helper()
	r, err := oci.ParseReference(ref)
	must(t, err)
	var fs []oci.File
	for i := 0; i+1 < len(files); i += 2 {
		fs = append(fs, oci.File{Name: files[i], Data: []byte(files[i+1])})
	}
	res, err := oci.Push(context.Background(), r, fs, oci.PushOptions{Transport: transport, SkipValidate: skipValidate})
	must(t, err)
	return res.Manifest.Digest.String()
}

func newOCISource(t *testing.T, ref, cacheDir string) *OCI {
	t.Helper()
	o, err := NewOCI(OCIOptions{Ref: ref, Transport: transport, Interval: 100 * time.Millisecond, CacheDir: cacheDir})
	must(t, err)
	return o
}

// TestOCIFollowsTag runs the life of an OCI source against a real registry: it follows a tag
// through a new version, rejects an invalid push, survives the registry going away, and a new
// source started without the registry enforces the cached set at once.
func TestOCIFollowsTag(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies:prod"
	cache := t.TempDir()
	v1 := push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "web"))

	c := newChanges()
	m := start(t, c, newOCISource(t, ref, cache))
	if m.Current().Match.Len() != 0 {
		t.Fatal("policies in force before the first pull, with an empty cache")
	}

	// v1 is pulled by the first poll.
	ch := c.wait(t, "for v1", func(ch Change) bool { return ch.Err == nil && ch.Digest == v1 })
	if ch.Kind != KindOCI || ch.Policies != 1 || ch.FromCache || ch.Location != reg.Host+"/policies:prod@"+v1 {
		t.Fatalf("v1 change = %+v", ch)
	}
	if got := applying(m.Current(), "web"); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("v1 applying to app=web: %v", got)
	}
	if _, err := os.Stat(cachePath(cache, reg.Host+"/policies:prod")); err != nil {
		t.Fatalf("v1 was not cached: %v", err)
	}

	// v2 moves the selector to app=api and adds a file: in force within a poll or two.
	v2 := push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "api"), "extra.yaml", testutil.BlockShellPolicy("extra", "", "api"))
	c.wait(t, "for v2", func(ch Change) bool { return ch.Err == nil && ch.Digest == v2 })
	set := m.Current()
	if len(applying(set, "web")) != 0 || !slices.Equal(applying(set, "api"), []string{"web", "extra"}) {
		t.Fatalf("v2: web %v, api %v", applying(set, "web"), applying(set, "api"))
	}
	if set.Sources[0].Digest != v2 || set.Documents[0].File != reg.Host+"/policies:prod@"+v2+"/web.yaml" {
		t.Fatalf("v2 set: sources %+v, first file %s", set.Sources, set.Documents[0].File)
	}

	// An invalid policy pushed with --skip-validate is rejected: v2 stays, the error shows.
	bad := push(t, ref, true, "web.yaml", testutil.InvalidPolicy())
	ch = c.wait(t, "rejecting the invalid push", func(ch Change) bool { return ch.Err != nil })
	if !strings.Contains(ch.Err.Error(), bad) || !strings.Contains(ch.Err.Error(), "actionn") || ch.Digest != v2 {
		t.Fatalf("rejection = %+v", ch)
	}
	if m.Current() != set {
		t.Fatal("the set changed after an invalid push")
	}
	st := m.Status()[0]
	if !st.Failing || st.Digest != v2 || st.Policies != 2 || !strings.Contains(st.LastError, "actionn") {
		t.Fatalf("status after the invalid push = %+v", st)
	}
	// The rejected version is not downloaded again at every poll: later polls only resolve.
	gets := reg.Count("GET", registrytest.RouteManifest)
	heads := reg.Count("HEAD", registrytest.RouteManifest)
	waitFor(t, "two more polls", func() bool { return reg.Count("HEAD", registrytest.RouteManifest) >= heads+2 })
	if n := reg.Count("GET", registrytest.RouteManifest); n != gets {
		t.Errorf("the rejected manifest was fetched %d more times", n-gets)
	}

	// The registry goes away: v2 stays in force, the failure is visible.
	reg.Close()
	ch = c.wait(t, "after the registry went away", func(ch Change) bool {
		return ch.Err != nil && !strings.Contains(ch.Err.Error(), "actionn")
	})
	if m.Current() != set || ch.Digest != v2 {
		t.Fatalf("after the registry went away: change %+v, set replaced: %v", ch, m.Current() != set)
	}
	if st := m.Status()[0]; !st.Failing || st.LastErrorAt.Before(st.LastSuccess) || st.Policies != 2 {
		t.Fatalf("status with the registry away = %+v", st)
	}

	// A new source (a restarted karmord) without the registry enforces the cached v2 at once.
	c2 := newChanges()
	m2 := start(t, c2, newOCISource(t, ref, cache))
	restarted := m2.Current()
	if restarted.Sources[0].Digest != v2 || !slices.Equal(applying(restarted, "api"), []string{"web", "extra"}) {
		t.Fatalf("restart without the registry: sources %+v, applying %v", restarted.Sources, applying(restarted, "api"))
	}
	if st := m2.Status()[0]; !st.FromCache || st.Digest != v2 || st.Location != reg.Host+"/policies:prod@"+v2 {
		t.Fatalf("status from cache = %+v", st)
	}
	first := c2.wait(t, "from the cache", func(Change) bool { return true })
	if !first.FromCache || first.Err != nil || first.Generation != 1 {
		t.Fatalf("first change of the restarted source = %+v", first)
	}
	c2.wait(t, "the restarted source's poll failing", func(ch Change) bool { return ch.Err != nil })
	if m2.Current() != restarted {
		t.Fatal("a failed poll replaced the cached set")
	}
}

// TestOCICacheConfirmedWithoutRebuild starts from a cache the registry still serves: the
// source is confirmed (no longer FromCache) without building a new set.
func TestOCICacheConfirmedWithoutRebuild(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies:prod"
	cache := t.TempDir()
	v1 := push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "web"))

	c := newChanges()
	start(t, c, newOCISource(t, ref, cache))
	c.wait(t, "for v1", func(ch Change) bool { return ch.Digest == v1 })

	c2 := newChanges()
	m2 := start(t, c2, newOCISource(t, ref, cache))
	if st := m2.Status()[0]; !st.FromCache || st.Digest != v1 {
		t.Fatalf("status at start = %+v", st)
	}
	manifests := reg.Count("GET", registrytest.RouteManifest)
	waitFor(t, "the cache to be confirmed", func() bool { return !m2.Status()[0].FromCache })
	if g := m2.Current().Generation; g != 1 {
		t.Errorf("confirming the cache built set generation %d", g)
	}
	if n := reg.Count("GET", registrytest.RouteManifest); n != manifests {
		t.Errorf("confirming the cache fetched the manifest %d times", n-manifests)
	}
}

func TestOCIDamagedCacheIsIgnoredAndVisible(t *testing.T) {
	cache := t.TempDir()
	ref := "127.0.0.1:1/policies:prod" // nothing listens there
	for name, data := range map[string]string{
		"not JSON":        "{",
		"unknown field":   `{"version":1,"reference":"127.0.0.1:1/policies:prod","digest":"sha256:` + strings.Repeat("0", 64) + `","files":[],"extra":1}`,
		"other reference": `{"version":1,"reference":"elsewhere/x:y","digest":"sha256:` + strings.Repeat("0", 64) + `","files":[]}`,
		"bad digest":      `{"version":1,"reference":"127.0.0.1:1/policies:prod","digest":"md5:x","files":[]}`,
		"damaged file":    `{"version":1,"reference":"127.0.0.1:1/policies:prod","digest":"sha256:` + strings.Repeat("0", 64) + `","files":[{"name":"a.yaml","digest":"sha256:` + strings.Repeat("1", 64) + `","data":"eA=="}]}`,
		"escaping name":   `{"version":1,"reference":"127.0.0.1:1/policies:prod","digest":"sha256:` + strings.Repeat("0", 64) + `","files":[{"name":"../a.yaml","digest":"sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881","data":"eA=="}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			must(t, os.WriteFile(cachePath(cache, ref), []byte(data), 0o600))
			m := start(t, newChanges(), newOCISource(t, ref, cache))
			st := m.Status()[0]
			if !st.Failing || !strings.Contains(st.LastError, "policy cache") || m.Current().Match.Len() != 0 {
				t.Fatalf("status = %+v, %d policies", st, m.Current().Match.Len())
			}
		})
	}
}

// TestOCICacheWithInvalidPolicies refuses a cache whose files verify but no longer validate
// (written by an older karmor, say): the cache is not a way around validation.
func TestOCICacheWithInvalidPolicies(t *testing.T) {
	cache := t.TempDir()
	ref := "127.0.0.1:1/policies:prod"
	o := newOCISource(t, ref, cache)
	must(t, writeCache(cache, o.record("sha256:"+strings.Repeat("0", 64), []namedData{{"a.yaml", []byte(testutil.InvalidPolicy())}})))
	if _, err := o.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "actionn") {
		t.Fatalf("Load = %v", err)
	}
	entries, err := os.ReadDir(cache)
	must(t, err)
	if len(entries) != 1 || filepath.Ext(entries[0].Name()) != ".json" {
		t.Errorf("the cache directory holds %v (temporary files left behind?)", entries)
	}
}

// waitFor polls cond until it holds, failing after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReadCacheIsBounded(t *testing.T) {
	cache := t.TempDir()
	ref := "registry.example/policies:prod"
	o := newOCISource(t, ref, cache)
	must(t, writeCache(cache, o.record("sha256:"+strings.Repeat("0", 64), []namedData{{"a.yaml", []byte(strings.Repeat("x", 3<<20))}})))
	if _, err := readCache(cache, ref, 1<<20); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("an oversized cache file was read: %v", err)
	}
	if rec, err := readCache(cache, ref, 4<<20); err != nil || len(rec.Files) != 1 || len(rec.Files[0].Data) != 3<<20 {
		t.Fatalf("a cache file within bounds: %v", err)
	}
}

// TestOCIAuth uses the transport options of `karmor oci`: right credentials pull, wrong ones
// leave the source failing with an error that says so.
func TestOCIAuth(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{Auth: registrytest.AuthBasic, Users: map[string]string{"ci": "s3cret"}})
	ref := reg.Host + "/policies:prod"
	r, err := oci.ParseReference(ref)
	must(t, err)
	withUser := func(password string) oci.TransportOptions {
		tr := transport
		tr.Username, tr.Password, tr.DockerConfig = "ci", password, filepath.Join(t.TempDir(), "none.json")
		return tr
	}
	res, err := oci.Push(context.Background(), r, []oci.File{{Name: "web.yaml", Data: []byte(testutil.BlockShellPolicy("web", "", "web"))}},
		oci.PushOptions{Transport: withUser("s3cret")})
	must(t, err)

	for _, c := range []struct {
		password string
		ok       bool
	}{{"s3cret", true}, {"wrong", false}} {
		o, err := NewOCI(OCIOptions{Ref: ref, Transport: withUser(c.password), Interval: time.Hour})
		must(t, err)
		changes := newChanges()
		m := start(t, changes, o)
		ch := changes.wait(t, "after the first poll", func(Change) bool { return true })
		if c.ok && (ch.Err != nil || ch.Digest != res.Manifest.Digest.String() || m.Current().Match.Len() != 1) {
			t.Errorf("with the right password: %+v", ch)
		}
		if !c.ok {
			t.Logf("error with a wrong password: %v", ch.Err)
		}
		if !c.ok && (ch.Err == nil || !strings.Contains(strings.ToLower(ch.Err.Error()), "unauthorized") || m.Current().Match.Len() != 0) {
			t.Errorf("with a wrong password: %+v", ch)
		}
	}
}
