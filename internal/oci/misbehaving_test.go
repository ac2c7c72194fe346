package oci

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/registrytest"
	"github.com/opencontainers/go-digest"
)

// pullTarget prepares DIR inside a parent that also holds a file outside DIR, with an
// existing policy of a name the artifacts use, an unrelated file, and a symlink planted
// under a policy name that points outside DIR. It returns DIR and the parent.
func pullTarget(t *testing.T) (dir, parent string) {
	t.Helper()
	parent = t.TempDir()
	dir = filepath.Join(parent, "policies")
	writeFile(t, filepath.Join(dir, "a.yaml"), []byte("previous a"))
	writeFile(t, filepath.Join(dir, "notes.txt"), []byte("the user's own file"))
	writeFile(t, filepath.Join(parent, "outside.yaml"), []byte("outside DIR"))
	if err := os.Symlink(filepath.Join(parent, "outside.yaml"), filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	return dir, parent
}

func TestPullRefusesMisbehavingRegistries(t *testing.T) {
	a, b := validPolicy("a"), validPolicy("b")
	big := bytes.Repeat([]byte("#"), DefaultMaxLayerSize+1)
	tests := []struct {
		name       string
		artifact   registrytest.Artifact
		opts       func(*registrytest.MisbehavingOptions)
		want       string
		noBlobGETs bool // refused before any layer was requested
	}{
		{name: "wrong digest", want: "does not match its digest", artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: "a.yaml", Data: a}, {Title: "b.yaml", Data: b, Digest: digest.FromString("something else")}}}},
		{name: "wrong size", want: "b.yaml", artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: "a.yaml", Data: a}, {Title: "b.yaml", Data: b, Size: int64(len(b)) - 1}}}},
		{name: "parent traversal", want: "unsafe title", noBlobGETs: true, artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: "a.yaml", Data: a}, {Title: "../x.yaml", Data: b}}}},
		{name: "absolute title", want: "unsafe title", noBlobGETs: true, artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: "/etc/x.yaml", Data: b}}}},
		{name: "nested title", want: "unsafe title", noBlobGETs: true, artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: "a/b.yaml", Data: b}}}},
		{name: "NUL in title", want: "unsafe title", noBlobGETs: true, artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: "b.yaml\x00.txt", Data: b}}}},
		{name: "dot title", want: "unsafe title", noBlobGETs: true, artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: ".", Data: b}}}},
		{name: "empty title", want: "unsafe title", noBlobGETs: true, artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: "", Data: b}}}},
		{name: "missing title", want: "no org.opencontainers.image.title", noBlobGETs: true, artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{NoTitle: true, Data: b}}}},
		{name: "duplicate titles", want: "two policy layers are titled", noBlobGETs: true, artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: "a.yaml", Data: a}, {Title: "a.yaml", Data: b}}}},
		{name: "oversize layer", want: "over the limit", noBlobGETs: true, artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: "a.yaml", Data: a}, {Title: "b.yaml", Data: big}}}},
		{name: "negative size", want: "over the limit", noBlobGETs: true, artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: "a.yaml", Data: a, Size: -5}}}},
		{name: "malformed digest", want: "invalid digest", noBlobGETs: true, artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: "a.yaml", Data: a, Digest: "sha256:../../etc"}}}},
		{name: "oversize manifest", want: "manifest is", noBlobGETs: true, artifact: registrytest.Artifact{
			Annotations: map[string]string{"pad": strings.Repeat("x", DefaultMaxManifestSize)},
			Layers:      []registrytest.Layer{{Title: "a.yaml", Data: a}}}},
		{name: "truncated body", want: "b.yaml", opts: func(o *registrytest.MisbehavingOptions) { o.TruncateBlobs = true },
			artifact: registrytest.Artifact{Layers: []registrytest.Layer{{Title: "b.yaml", Data: b}}}},
		{name: "missing blob", want: "has no blob for layer b.yaml", opts: func(o *registrytest.MisbehavingOptions) { delete(o.Blobs, digest.FromBytes(b)) },
			artifact: registrytest.Artifact{Layers: []registrytest.Layer{{Title: "a.yaml", Data: a}, {Title: "b.yaml", Data: b}}}},
		{name: "forbidden", want: "(403 Forbidden)", noBlobGETs: true, opts: func(o *registrytest.MisbehavingOptions) { o.FailFirst, o.FailStatus = 1000, http.StatusForbidden },
			artifact: registrytest.Artifact{Layers: []registrytest.Layer{{Title: "a.yaml", Data: a}}}},
		{name: "invalid policy", want: "invalid policies", artifact: registrytest.Artifact{Layers: []registrytest.Layer{
			{Title: "a.yaml", Data: a}, {Title: "b.yaml", Data: []byte("apiVersion: v1\nkind: Secret\n")}}}},
		{name: "not JSON", want: "not valid JSON", noBlobGETs: true, opts: func(o *registrytest.MisbehavingOptions) {
			o.Manifest = []byte("<html>oops</html>")
		}},
		{name: "index", want: "image index", noBlobGETs: true, opts: func(o *registrytest.MisbehavingOptions) {
			o.Manifest, o.ManifestMediaType = registrytest.Index(digest.FromString("x")), registrytest.MediaTypeImageIndex
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			manifest, blobs := tt.artifact.Build()
			opts := registrytest.MisbehavingOptions{Repository: "evil/policies", Tag: "v1", Manifest: manifest, Blobs: blobs}
			if tt.opts != nil {
				tt.opts(&opts)
			}
			reg := registrytest.NewMisbehaving(t, opts)
			tr := testTransport(t)
			tr.PlainHTTP = true
			dir, parent := pullTarget(t)
			before := treeSnapshot(t, parent)

			_, err := Pull(context.Background(), mustRef(t, reg.Reference()), dir, PullOptions{Transport: tr})
			if err == nil {
				t.Fatal("pull succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant it to mention %q", err, tt.want)
			}
			if after := treeSnapshot(t, parent); after != before {
				t.Errorf("failed pull changed the file system:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if n := reg.Count("GET", registrytest.RouteBlob); tt.noBlobGETs && n != 0 {
				t.Errorf("%d layers were requested before the refusal", n)
			}
			if _, err := Inspect(context.Background(), mustRef(t, reg.Reference()), InspectOptions{Transport: tr}); err == nil && tt.name != "invalid policy" {
				t.Error("inspect accepted what pull refused")
			}
		})
	}
}

func TestPullRetriesThroughServerErrors(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusTooManyRequests, http.StatusBadGateway} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			manifest, blobs := registrytest.Artifact{Layers: []registrytest.Layer{{Title: "a.yaml", Data: validPolicy("a")}}}.Build()
			reg := registrytest.NewMisbehaving(t, registrytest.MisbehavingOptions{
				Repository: "flaky/p", Tag: "v1", Manifest: manifest, Blobs: blobs, FailFirst: 3, FailStatus: status,
			})
			tr := testTransport(t)
			tr.PlainHTTP = true
			dir, _ := pullTarget(t)
			if _, err := Pull(context.Background(), mustRef(t, reg.Reference()), dir, PullOptions{Transport: tr}); err != nil {
				t.Fatalf("pull through %d errors: %v", status, err)
			}
			if readFile(t, filepath.Join(dir, "a.yaml")) != string(validPolicy("a")) {
				t.Error("a.yaml not written")
			}
			if reg.Total() < 4 {
				t.Errorf("only %d requests: the failures were not retried", reg.Total())
			}
		})
	}
}

func TestPullGivesUpAfterBoundedRetries(t *testing.T) {
	manifest, blobs := registrytest.Artifact{Layers: []registrytest.Layer{{Title: "a.yaml", Data: validPolicy("a")}}}.Build()
	reg := registrytest.NewMisbehaving(t, registrytest.MisbehavingOptions{
		Repository: "down/p", Tag: "v1", Manifest: manifest, Blobs: blobs, FailFirst: 1000, FailStatus: http.StatusServiceUnavailable,
	})
	tr := testTransport(t)
	tr.PlainHTTP = true
	tr.Retry.MaxRetries = 2
	dir, parent := pullTarget(t)
	before := treeSnapshot(t, parent)
	if _, err := Pull(context.Background(), mustRef(t, reg.Reference()), dir, PullOptions{Transport: tr}); err == nil {
		t.Fatal("pull from a registry that always fails succeeded")
	}
	if n := reg.Total(); n != 3 {
		t.Errorf("%d requests, want 3 (one try and two retries)", n)
	}
	if treeSnapshot(t, parent) != before {
		t.Error("failed pull changed the file system")
	}
}

func TestPullRaisedLayerLimit(t *testing.T) {
	big := append(validPolicy("big"), bytes.Repeat([]byte("# padding\n"), DefaultMaxLayerSize/10+1)...)
	manifest, blobs := registrytest.Artifact{Layers: []registrytest.Layer{{Title: "big.yaml", Data: big}}}.Build()
	reg := registrytest.NewMisbehaving(t, registrytest.MisbehavingOptions{Repository: "big/p", Tag: "v1", Manifest: manifest, Blobs: blobs})
	tr := testTransport(t)
	tr.PlainHTTP = true
	dir := t.TempDir()
	if _, err := Pull(context.Background(), mustRef(t, reg.Reference()), dir, PullOptions{Transport: tr}); err == nil {
		t.Fatal("default limit let a layer over 4 MiB through")
	}
	// The total limit given below the layer limit is raised to it.
	opts := PullOptions{Transport: tr, Fetch: FetchOptions{MaxLayerSize: 8 << 20, MaxTotalSize: 1}}
	if _, err := Pull(context.Background(), mustRef(t, reg.Reference()), dir, opts); err != nil {
		t.Fatalf("raised limit: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "big.yaml")); got != string(big) {
		t.Error("big.yaml differs")
	}
}

func TestPullTotalLimit(t *testing.T) {
	manifest, blobs := registrytest.Artifact{Layers: []registrytest.Layer{
		{Title: "a.yaml", Data: validPolicy("a")}, {Title: "b.yaml", Data: validPolicy("b")},
	}}.Build()
	reg := registrytest.NewMisbehaving(t, registrytest.MisbehavingOptions{Repository: "p", Tag: "v1", Manifest: manifest, Blobs: blobs})
	tr := testTransport(t)
	tr.PlainHTTP = true
	size := int64(len(validPolicy("a")))
	opts := PullOptions{Transport: tr, Fetch: FetchOptions{MaxLayerSize: size + 5, MaxTotalSize: size + 10}}
	_, err := Pull(context.Background(), mustRef(t, reg.Reference()), t.TempDir(), opts)
	if err == nil || !strings.Contains(err.Error(), "--max-total-size") {
		t.Fatalf("err = %v, want the total limit", err)
	}
	if n := reg.Count("GET", registrytest.RouteBlob); n != 0 {
		t.Errorf("%d layers fetched before the refusal", n)
	}
}
