package oci

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/registrytest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
)

// testTransport isolates a test from the machine: no ~/.docker credentials, no
// $KARMOR_OCI_TLS_INSECURE, short retry waits.
func testTransport(t *testing.T) TransportOptions {
	t.Helper()
	t.Setenv(EnvPlainHTTP, "")
	return TransportOptions{
		DockerConfig: filepath.Join(t.TempDir(), "config.json"),
		Retry:        RetryOptions{MinWait: time.Millisecond, MaxWait: 5 * time.Millisecond},
	}
}

func mustRef(t *testing.T, s string) Reference {
	t.Helper()
	ref, err := ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func policyFiles(n int) []File {
	files := make([]File, n)
	for i := range files {
		name := fmt.Sprintf("policy-%03d", i)
		files[i] = File{Name: name + ".yaml", Data: validPolicy(name)}
	}
	return files
}

// rawManifest fetches the manifest ref names straight from the registry.
func rawManifest(t *testing.T, ref Reference, tr TransportOptions) ocispec.Manifest {
	t.Helper()
	repo, err := NewRepository(ref, tr)
	if err != nil {
		t.Fatal(err)
	}
	desc, rc, err := repo.FetchReference(context.Background(), ref.Target())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := content.ReadAll(rc, desc)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, forbidden := range []string{"artifactType", "subject"} {
		if _, ok := raw[forbidden]; ok {
			t.Errorf("manifest has %q; registries such as GitLab and older ECR reject it", forbidden)
		}
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPushWritesTheWireFormat(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	tr := testTransport(t)
	tr.PlainHTTP = true
	ref := mustRef(t, reg.Host+"/team/policies:v1")
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	res, err := Push(context.Background(), ref, policyFiles(2), PushOptions{
		Transport: tr, Created: created,
		Source: "https://git.example/policies", Revision: "abc123", Version: "1.2.3",
		Annotations: map[string]string{"com.example.team": "sec"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Reference.String(), reg.Host+"/team/policies:v1@sha256:") {
		t.Errorf("pinned reference = %s", res.Reference)
	}
	m := rawManifest(t, res.Reference, tr)
	if m.MediaType != ocispec.MediaTypeImageManifest || m.SchemaVersion != 2 {
		t.Errorf("manifest type %q schema %d", m.MediaType, m.SchemaVersion)
	}
	if m.Config.MediaType != MediaTypeConfig || m.Config.Size != 2 || m.Config.Digest != digest.FromString("{}") || m.Config.Annotations != nil {
		t.Errorf("config descriptor = %+v, want %s of {} without annotations", m.Config, MediaTypeConfig)
	}
	if len(m.Layers) != 2 {
		t.Fatalf("%d layers, want 2", len(m.Layers))
	}
	for i, l := range m.Layers {
		want := fmt.Sprintf("policy-%03d.yaml", i)
		if l.MediaType != MediaTypePolicyLayer || l.Annotations[AnnotationTitle] != want {
			t.Errorf("layer %d = %+v, want %s titled %s", i, l, MediaTypePolicyLayer, want)
		}
	}
	wantAnnotations := map[string]string{
		AnnotationCreated: "2026-01-02T03:04:05Z", AnnotationSource: "https://git.example/policies",
		AnnotationRevision: "abc123", AnnotationVersion: "1.2.3", "com.example.team": "sec",
	}
	for k, v := range wantAnnotations {
		if m.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, m.Annotations[k], v)
		}
	}

	// The same files and time give the same digest, and nothing is uploaded again.
	again, err := Push(context.Background(), ref, policyFiles(2), PushOptions{
		Transport: tr, Created: created, Source: "https://git.example/policies", Revision: "abc123", Version: "1.2.3",
		Annotations: map[string]string{"com.example.team": "sec"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if again.Manifest.Digest != res.Manifest.Digest || again.Uploaded != 0 {
		t.Errorf("second push: digest %s (first %s), %d blobs uploaded, want same digest and 0", again.Manifest.Digest, res.Manifest.Digest, again.Uploaded)
	}
}

func TestPushPullRoundTripAndSecondPullDownloadsNothing(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	tr := testTransport(t)
	tr.PlainHTTP = true
	ref := mustRef(t, reg.Host+"/myimage:latest")
	files := policyFiles(3)
	pushed, err := Push(context.Background(), ref, files, PushOptions{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "out")
	res, err := Pull(context.Background(), ref, dir, PullOptions{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Digest != pushed.Manifest.Digest || len(res.Files) != 3 {
		t.Fatalf("pull result %+v", res)
	}
	for _, f := range files {
		if got := readFile(t, filepath.Join(dir, f.Name)); got != string(f.Data) {
			t.Errorf("%s differs after the round trip", f.Name)
		}
	}

	reg.Reset()
	before := treeSnapshot(t, dir)
	res, err = Pull(context.Background(), ref, dir, PullOptions{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.Count("GET", registrytest.RouteBlob); n != 0 {
		t.Errorf("second pull fetched %d blobs, want 0 (requests: %s)", n, reg.Counter)
	}
	for _, f := range res.Files {
		if !f.Unchanged {
			t.Errorf("%s not reported unchanged", f.Name)
		}
	}
	if after := treeSnapshot(t, dir); after != before {
		t.Error("second pull rewrote identical files")
	}

	// A locally edited file is fetched again, and only that one.
	writeFile(t, filepath.Join(dir, files[1].Name), []byte("edited"))
	reg.Reset()
	if _, err := Pull(context.Background(), ref.Pinned(pushed.Manifest.Digest), dir, PullOptions{Transport: tr}); err != nil {
		t.Fatal(err)
	}
	if n := reg.Count("GET", registrytest.RouteBlob); n != 1 {
		t.Errorf("pull after an edit fetched %d blobs, want 1 (%s)", n, reg.Counter)
	}
	if got := readFile(t, filepath.Join(dir, files[1].Name)); got != string(files[1].Data) {
		t.Error("edited file not restored")
	}
}

// TestPushNeverTagsInvalidFiles: blobs may go up while the files are validated, but an
// invalid set never gets a manifest, so a new tag never appears and an existing one keeps
// its artifact.
func TestPushNeverTagsInvalidFiles(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	tr := testTransport(t)
	tr.PlainHTTP = true
	ref := mustRef(t, reg.Host+"/p:1")
	bad := []File{
		{Name: "good.yaml", Data: validPolicy("good")},
		{Name: "bad.yaml", Data: append(validPolicy("bad"), []byte("  unknownField: 1\n")...)},
	}
	_, err := Push(context.Background(), ref, bad, PushOptions{Transport: tr})
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), "no manifest was pushed") {
		t.Fatalf("err = %v, want a validation error naming bad.yaml", err)
	}
	empty := []File{{Name: "empty.yaml", Data: []byte("# nothing\n")}}
	if _, err := Push(context.Background(), ref, empty, PushOptions{Transport: tr}); err == nil || !strings.Contains(err.Error(), "no policy in empty.yaml") {
		t.Errorf("err = %v, want 'no policy in empty.yaml'", err)
	}
	if n := reg.Count(http.MethodPut, "manifest"); n != 0 {
		t.Errorf("invalid push sent %d manifests: %s", n, reg.Counter)
	}
	repo, err := NewRepository(ref, tr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ResolveDigest(context.Background(), repo, ref); !errors.Is(err, errdef.ErrNotFound) {
		t.Errorf("tag after invalid pushes: err = %v, want not found", err)
	}

	good, err := Push(context.Background(), ref, policyFiles(3), PushOptions{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Push(context.Background(), ref, append(policyFiles(3), bad[1]), PushOptions{Transport: tr}); err == nil {
		t.Fatal("invalid push over an existing tag succeeded")
	}
	if desc, err := ResolveDigest(context.Background(), repo, ref); err != nil || desc.Digest != good.Manifest.Digest {
		t.Errorf("tag after an invalid push = %v, %v; want the valid artifact %s", desc.Digest, err, good.Manifest.Digest)
	}
	if _, err := Push(context.Background(), ref, bad, PushOptions{Transport: tr, SkipValidate: true}); err != nil {
		t.Errorf("--skip-validate push: %v", err)
	}
	if _, err := Push(context.Background(), ref.Pinned(digest.FromString("x")), policyFiles(1), PushOptions{Transport: tr}); err == nil {
		t.Error("push to a digest reference succeeded")
	}
}

func TestPullValidatesBeforeWriting(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	tr := testTransport(t)
	tr.PlainHTTP = true
	ref := mustRef(t, reg.Host+"/p:bad")
	bad := []File{{Name: "bad.yaml", Data: []byte("kind: Deployment\n")}}
	if _, err := Push(context.Background(), ref, bad, PushOptions{Transport: tr, SkipValidate: true}); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	writeFile(t, filepath.Join(dir, "bad.yaml"), []byte("previous"))
	before := treeSnapshot(t, parent)
	_, err := Pull(context.Background(), ref, dir, PullOptions{Transport: tr})
	if err == nil || !strings.Contains(err.Error(), "invalid policies") {
		t.Fatalf("err = %v, want invalid policies", err)
	}
	if after := treeSnapshot(t, parent); after != before {
		t.Errorf("failed pull changed the tree:\n%s", after)
	}
	if _, err := Pull(context.Background(), ref, dir, PullOptions{Transport: tr, SkipValidate: true}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(dir, "bad.yaml")) != "kind: Deployment\n" {
		t.Error("--skip-validate pull did not write the file")
	}
}

func TestInspect(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	tr := testTransport(t)
	tr.PlainHTTP = true
	ref := mustRef(t, reg.Host+"/p:1")
	created := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	files := append(policyFiles(1), File{Name: "two-docs.yaml", Data: append(append(validPolicy("first"), "---\n"...), validPolicy("second")...)})
	pushed, err := Push(context.Background(), ref, files, PushOptions{Transport: tr, Created: created})
	if err != nil {
		t.Fatal(err)
	}
	in, err := Inspect(context.Background(), ref, InspectOptions{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	if in.Digest != pushed.Manifest.Digest || in.Created == nil || !in.Created.Equal(created) {
		t.Errorf("inspection digest %s created %v", in.Digest, in.Created)
	}
	if len(in.Policies) != 2 || in.Policies[0].File != "policy-000.yaml" || in.Policies[1].File != "two-docs.yaml" {
		t.Fatalf("policies = %+v", in.Policies)
	}
	p := in.Policies[1]
	if p.Size != int64(len(files[1].Data)) || p.Digest != digest.FromBytes(files[1].Data) {
		t.Errorf("size/digest = %d %s", p.Size, p.Digest)
	}
	if len(p.Documents) != 2 || p.Documents[0].Name != "first" || p.Documents[1].Name != "second" || p.Documents[0].Kind != "KubeArmorPolicy" || p.Documents[0].Namespace != "default" {
		t.Errorf("documents = %+v", p.Documents)
	}
}

func TestTLSWithCAFileInsecureAndPlainHTTPMismatch(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{TLS: true})
	ref := mustRef(t, reg.Host+"/tls/p:1")
	files := policyFiles(1)

	tr := testTransport(t)
	_, err := Push(context.Background(), ref, files, PushOptions{Transport: tr})
	if err == nil || !strings.Contains(err.Error(), "--ca-file") {
		t.Fatalf("untrusted certificate: err = %v, want a hint about --ca-file", err)
	}

	tr.CAFile = reg.CAFile
	if _, err := Push(context.Background(), ref, files, PushOptions{Transport: tr}); err != nil {
		t.Fatalf("push with --ca-file: %v", err)
	}

	insecure := testTransport(t)
	insecure.Insecure = true
	if _, err := Pull(context.Background(), ref, t.TempDir(), PullOptions{Transport: insecure}); err != nil {
		t.Fatalf("pull with --insecure: %v", err)
	}

	bad := testTransport(t)
	bad.CAFile = filepath.Join(t.TempDir(), "empty.pem")
	writeFile(t, bad.CAFile, []byte("not a certificate"))
	if _, err := NewRepository(ref, bad); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("bad CA file: err = %v", err)
	}

	plain := registrytest.New(t, registrytest.Options{})
	_, err = Push(context.Background(), mustRef(t, plain.Host+"/p:1"), files, PushOptions{Transport: testTransport(t)})
	if err == nil || !strings.Contains(err.Error(), "--plain-http") {
		t.Errorf("HTTPS to a plain-HTTP registry: err = %v, want a hint about --plain-http", err)
	}
}

func TestPlainHTTPFromEnvironment(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	tr := testTransport(t)
	t.Setenv(EnvPlainHTTP, "true")
	if _, err := Push(context.Background(), mustRef(t, reg.Host+"/p:1"), policyFiles(1), PushOptions{Transport: tr}); err != nil {
		t.Fatalf("%s=true: %v", EnvPlainHTTP, err)
	}
	t.Setenv(EnvPlainHTTP, "sometimes")
	if _, err := NewRepository(mustRef(t, reg.Host+"/p:1"), tr); err == nil || !strings.Contains(err.Error(), EnvPlainHTTP) {
		t.Errorf("bad %s: err = %v", EnvPlainHTTP, err)
	}
}

func TestAuthenticatedRegistries(t *testing.T) {
	users := map[string]string{"alice": "s3cret"}
	for _, mode := range []struct {
		name string
		auth registrytest.Auth
		tls  bool
	}{{"basic", registrytest.AuthBasic, false}, {"token", registrytest.AuthToken, false}, {"token-tls", registrytest.AuthToken, true}} {
		t.Run(mode.name, func(t *testing.T) {
			reg := registrytest.New(t, registrytest.Options{Auth: mode.auth, Users: users, TLS: mode.tls})
			ref := mustRef(t, reg.Host+"/team/p:1")
			base := testTransport(t)
			base.PlainHTTP = !mode.tls
			base.CAFile = reg.CAFile

			anonymous := base
			_, err := Push(context.Background(), ref, policyFiles(1), PushOptions{Transport: anonymous})
			assertLoginHint(t, err, reg.Host)

			wrong := base
			wrong.Username, wrong.Password = "alice", "wrong"
			_, err = Push(context.Background(), ref, policyFiles(1), PushOptions{Transport: wrong})
			assertLoginHint(t, err, reg.Host)

			right := base
			right.Username, right.Password = "alice", "s3cret"
			if _, err := Push(context.Background(), ref, policyFiles(2), PushOptions{Transport: right}); err != nil {
				t.Fatalf("push with -u/-p: %v", err)
			}

			// `docker login` leaves base64 credentials in config.json.
			fromConfig := base
			writeFile(t, fromConfig.DockerConfig, fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`,
				reg.Host, base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))))
			dir := t.TempDir()
			if _, err := Pull(context.Background(), ref, dir, PullOptions{Transport: fromConfig}); err != nil {
				t.Fatalf("pull with config.json credentials: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "policy-001.yaml")); err != nil {
				t.Error(err)
			}
		})
	}
}

func assertLoginHint(t *testing.T, err error, host string) {
	t.Helper()
	if err == nil {
		t.Fatal("push without valid credentials succeeded")
	}
	for _, want := range []string{host, "docker login " + host, "-u"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestDockerCredentialHelper runs a real credential helper program, the way
// `docker login` with credHelpers leaves things.
func TestDockerCredentialHelper(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{Auth: registrytest.AuthBasic, Users: map[string]string{"helper": "pw"}})
	bin := t.TempDir()
	helper := "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"helper\",\"Secret\":\"pw\"}' \"$server\"\n"
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-karmortest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	tr := testTransport(t)
	tr.PlainHTTP = true
	writeFile(t, tr.DockerConfig, fmt.Appendf(nil, `{"credHelpers":{%q:"karmortest"}}`, reg.Host))
	if _, err := Push(context.Background(), mustRef(t, reg.Host+"/p:1"), policyFiles(1), PushOptions{Transport: tr}); err != nil {
		t.Fatalf("push with a credential helper: %v", err)
	}
	storeConfig := testTransport(t)
	storeConfig.PlainHTTP = true
	writeFile(t, storeConfig.DockerConfig, []byte(`{"credsStore":"karmortest"}`))
	if _, err := Pull(context.Background(), mustRef(t, reg.Host+"/p:1"), t.TempDir(), PullOptions{Transport: storeConfig}); err != nil {
		t.Fatalf("pull with credsStore: %v", err)
	}
}

func TestPullTellsWhatANonPolicyReferenceIs(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	tr := testTransport(t)
	tr.PlainHTTP = true
	push := func(tag string, mediaType string, data []byte, blobs map[digest.Digest][]byte) {
		t.Helper()
		ref := mustRef(t, reg.Host+"/things:"+tag)
		repo, err := NewRepository(ref, tr)
		if err != nil {
			t.Fatal(err)
		}
		for d, b := range blobs {
			if err := repo.Blobs().Push(context.Background(), ocispec.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: int64(len(b))}, bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		}
		desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := repo.PushReference(context.Background(), desc, bytes.NewReader(data), tag); err != nil {
			t.Fatal(err)
		}
	}
	image, imageBlobs := registrytest.Artifact{
		ConfigMediaType: registrytest.MediaTypeImageConfig,
		Layers:          []registrytest.Layer{{MediaType: registrytest.MediaTypeImageLayerGzip, Data: []byte("not really a tar"), NoTitle: true}},
	}.Build()
	push("image", registrytest.MediaTypeImageManifest, image, imageBlobs)
	push("index", registrytest.MediaTypeImageIndex, registrytest.Index(digest.FromBytes(image)), nil)
	other, otherBlobs := registrytest.Artifact{
		ConfigMediaType: "application/vnd.example.config+json", ArtifactType: "application/vnd.example.sbom",
		Layers: []registrytest.Layer{{MediaType: "application/spdx+json", Data: []byte("{}"), Title: "sbom.json"}},
	}.Build()
	push("sbom", registrytest.MediaTypeImageManifest, other, otherBlobs)
	withType, withTypeBlobs := registrytest.Artifact{
		ArtifactType: "application/vnd.cncf.kubearmor.config.v1+json",
		Layers: []registrytest.Layer{
			{Title: "a.yaml", Data: validPolicy("a")},
			{MediaType: "text/plain", Title: "README", Data: []byte("ignored")},
		},
	}.Build()
	push("artifacttype", registrytest.MediaTypeImageManifest, withType, withTypeBlobs)

	for tag, want := range map[string]string{"image": "is a container image", "index": "is an image index", "sbom": "application/spdx+json"} {
		dir := t.TempDir()
		_, err := Pull(context.Background(), mustRef(t, reg.Host+"/things:"+tag), dir, PullOptions{Transport: tr})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not a KubeArmor policy artifact") {
			t.Errorf("pull %s: err = %v, want it to say %q", tag, err, want)
		}
	}

	dir := t.TempDir()
	res, err := Pull(context.Background(), mustRef(t, reg.Host+"/things:artifacttype"), dir, PullOptions{Transport: tr})
	if err != nil {
		t.Fatalf("manifest with artifactType and an extra layer: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(res.Files) != 1 || len(entries) != 1 || entries[0].Name() != "a.yaml" {
		t.Errorf("pulled %+v, dir holds %v; want a.yaml only", res.Files, entries)
	}
}
