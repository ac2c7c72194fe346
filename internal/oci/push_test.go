package oci

import (
	"context"
	"testing"

	"github.com/karmor/karmor/internal/registrytest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestPushSendsOnlyWhatIsNeeded checks the requests of each push plan against a real
// registry: blobs are small, so requests are what a push costs.
func TestPushSendsOnlyWhatIsNeeded(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	tr := testTransport(t)
	tr.PlainHTTP = true
	files := policyFiles(5)
	push := func(tag string, files []File) *PushResult {
		t.Helper()
		res, err := Push(context.Background(), mustRef(t, reg.Host+"/team/p:"+tag), files, PushOptions{Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	// A new repository: nothing to check, every blob uploaded once.
	reg.Reset()
	if res := push("v1", files); res.Uploaded != 6 {
		t.Errorf("first push uploaded %d blobs, want 6", res.Uploaded)
	}
	if n := reg.Count("HEAD", registrytest.RouteBlob); n != 0 {
		t.Errorf("first push into an empty repository checked %d blobs", n)
	}
	if n := reg.Count("POST", registrytest.RouteUpload) + reg.Count("PUT", registrytest.RouteUpload); n != 12 {
		t.Errorf("first push: %d upload requests, want 12 (%s)", n, reg.Counter)
	}

	// The same tag again with one file changed: only that file is sent, nothing checked.
	changed := append([]File(nil), files...)
	changed[2] = File{Name: changed[2].Name, Data: validPolicy("changed")}
	reg.Reset()
	if res := push("v1", changed); res.Uploaded != 1 {
		t.Errorf("push of one changed file uploaded %d blobs", res.Uploaded)
	}
	if n := reg.Count("HEAD", registrytest.RouteBlob); n != 0 {
		t.Errorf("re-push checked %d blobs the tag already named", n)
	}
	if total := reg.Total(); total != 4 { // GET manifest, POST+PUT upload, PUT manifest
		t.Errorf("re-push of one changed file made %d requests, want 4: %s", total, reg.Counter)
	}

	// A new tag in a repository that has others: the blobs another tag's manifest names
	// (v1's, the first listed) are not checked, the others are and only a missing one is
	// sent: GET manifest (none at v2), GET tags, GET v1's manifest, HEAD, POST+PUT
	// upload, PUT manifest.
	again := append([]File(nil), changed...)
	again[3] = File{Name: again[3].Name, Data: validPolicy("changed again")}
	reg.Reset()
	if res := push("v2", again); res.Uploaded != 1 {
		t.Errorf("push under a new tag uploaded %d blobs, want the one no tag had", res.Uploaded)
	}
	if n := reg.Count("HEAD", registrytest.RouteBlob); n != 1 {
		t.Errorf("push under a new tag checked %d blobs, want 1", n)
	}
	if total := reg.Total(); total != 7 {
		t.Errorf("push under a new tag made %d requests, want 7: %s", total, reg.Counter)
	}

	// A blob the registry holds though v1's manifest does not name it (the original
	// third file): checked, found, not sent.
	reg.Reset()
	if res := push("v0", files); res.Uploaded != 0 {
		t.Errorf("push of blobs the registry holds uploaded %d", res.Uploaded)
	}
	if n := reg.Count("HEAD", registrytest.RouteBlob); n != 1 {
		t.Errorf("push under a new tag checked %d blobs, want 1 (%s)", n, reg.Counter)
	}
}

// TestPushRecoversWhenTheRegistryDroppedABlob removes a blob the tag's manifest names;
// the push that skipped it, to that tag or to a new one, must notice and send it.
func TestPushRecoversWhenTheRegistryDroppedABlob(t *testing.T) {
	t.Run("same tag", func(t *testing.T) { testPushRecovers(t, "v1") })
	t.Run("new tag", func(t *testing.T) { testPushRecovers(t, "v2") })
}

func testPushRecovers(t *testing.T, tag string) {
	reg := registrytest.New(t, registrytest.Options{})
	tr := testTransport(t)
	tr.PlainHTTP = true
	ref := mustRef(t, reg.Host+"/p:v1")
	files := policyFiles(2)
	if _, err := Push(context.Background(), ref, files, PushOptions{Transport: tr}); err != nil {
		t.Fatal(err)
	}
	repo, err := NewRepository(ref, tr)
	if err != nil {
		t.Fatal(err)
	}
	dropped := ocispec.Descriptor{Digest: digest.FromBytes(files[1].Data), Size: int64(len(files[1].Data))}
	if err := repo.Blobs().Delete(context.Background(), dropped); err != nil {
		t.Fatal(err)
	}
	files[0] = File{Name: files[0].Name, Data: validPolicy("new")}
	ref.Tag = tag
	res, err := Push(context.Background(), ref, files, PushOptions{Transport: tr})
	if err != nil {
		t.Fatalf("push after the registry dropped a blob: %v", err)
	}
	if res.Uploaded != 2 {
		t.Errorf("uploaded %d blobs, want the changed one and the dropped one", res.Uploaded)
	}
	dir := t.TempDir()
	if _, err := Pull(context.Background(), ref, dir, PullOptions{Transport: tr}); err != nil {
		t.Fatalf("pull after recovery: %v", err)
	}
}
