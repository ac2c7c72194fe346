package oci

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/karmor/karmor/internal/registrytest"
	"github.com/karmor/karmor/internal/testutil"
)

const mypolicy = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: block-sa-token
  namespace: default
spec:
  selector:
    matchLabels:
      app: web
  file:
    matchDirectories:
    - dir: /run/secrets/kubernetes.io/serviceaccount/
      recursive: true
  action: Block
`

// karmor runs the built binary in dir with env added to an environment that has no
// Docker credentials of the machine's.
func karmor(t *testing.T, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(testutil.Binary(t, "karmor"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir(), "KARMOR_OCI_TLS_INSECURE=")
	cmd.Env = append(cmd.Env, env...)
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

func TestSeedCommands(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "mypolicy.yaml"), []byte(mypolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	insecure := []string{"KARMOR_OCI_TLS_INSECURE=true"}
	image := reg.Host + "/myimage:latest"

	code, out, errOut := karmor(t, work, insecure, "oci", "push", "-i", image, "-f", "mypolicy.yaml")
	if code != 0 {
		t.Fatalf("push: exit %d\n%s", code, errOut)
	}
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(image) + `@sha256:[0-9a-f]{64}\n$`).MatchString(out) {
		t.Errorf("push printed %q, want %s@sha256:...", out, image)
	}
	digest := strings.TrimPrefix(strings.TrimSpace(out), image+"@")

	dir := filepath.Join(work, "DIR")
	code, out, errOut = karmor(t, work, insecure, "oci", "pull", "-i", image, "-o", dir)
	if code != 0 {
		t.Fatalf("pull: exit %d\n%s", code, errOut)
	}
	if out != filepath.Join(dir, "mypolicy.yaml")+"\n" {
		t.Errorf("pull printed %q", out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "mypolicy.yaml")); string(got) != mypolicy {
		t.Errorf("pulled file = %q", got)
	}

	reg.Reset()
	code, out, _ = karmor(t, work, insecure, "oci", "pull", "-i", image, "-o", dir)
	if code != 0 || !strings.Contains(out, "(unchanged)") || reg.Count("GET", registrytest.RouteBlob) != 0 {
		t.Errorf("second pull: exit %d, stdout %q, requests %s", code, out, reg.Counter)
	}

	code, out, errOut = karmor(t, work, insecure, "oci", "inspect", "-i", image)
	if code != 0 {
		t.Fatalf("inspect: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{digest, "mypolicy.yaml", "KubeArmorPolicy", "default/block-sa-token", fmt.Sprint(len(mypolicy))} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = karmor(t, work, insecure, "oci", "inspect", "-i", image+"@"+digest, "--format", "json")
	if code != 0 || !strings.Contains(out, `"file": "mypolicy.yaml"`) || !strings.Contains(out, `"name": "block-sa-token"`) {
		t.Errorf("inspect --format json: exit %d\n%s", code, out)
	}
}

func TestTLSAndDockerLoginCredentials(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{TLS: true, Auth: registrytest.AuthToken, Users: map[string]string{"dev": "pw"}})
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "p.yaml"), []byte(mypolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	dockerConfig := t.TempDir()
	login := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Host, base64.StdEncoding.EncodeToString([]byte("dev:pw")))
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(login), 0o600); err != nil {
		t.Fatal(err)
	}
	loggedIn := []string{"DOCKER_CONFIG=" + dockerConfig}
	image := reg.Host + "/team/policies:v1"

	code, _, errOut := karmor(t, work, loggedIn, "oci", "push", "-i", image, "-f", "p.yaml")
	if code != 1 || !strings.Contains(errOut, "--ca-file") {
		t.Errorf("push without the CA: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = karmor(t, work, loggedIn, "oci", "push", "-i", image, "-f", "p.yaml", "--ca-file", reg.CAFile)
	if code != 0 {
		t.Fatalf("push with --ca-file and docker login credentials: exit %d\n%s", code, errOut)
	}
	code, _, errOut = karmor(t, work, nil, "oci", "pull", "-i", image, "--ca-file", reg.CAFile)
	if code != 1 || !strings.Contains(errOut, "docker login "+reg.Host) {
		t.Errorf("pull without credentials: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = karmor(t, work, loggedIn, "oci", "pull", "-i", image, "-o", "out", "--insecure")
	if code != 0 {
		t.Fatalf("pull with --insecure: exit %d\n%s", code, errOut)
	}
	if got, _ := os.ReadFile(filepath.Join(work, "out", "p.yaml")); string(got) != mypolicy {
		t.Errorf("pulled file = %q", got)
	}
}

func TestExitCodesAndUnsafeArtifact(t *testing.T) {
	manifest, blobs := registrytest.Artifact{Layers: []registrytest.Layer{
		{Title: "ok.yaml", Data: []byte(mypolicy)}, {Title: "../escape.yaml", Data: []byte(mypolicy)},
	}}.Build()
	evil := registrytest.NewMisbehaving(t, registrytest.MisbehavingOptions{Repository: "evil", Tag: "latest", Manifest: manifest, Blobs: blobs})
	parent := t.TempDir()
	dir := filepath.Join(parent, "policies")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ok.yaml"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := karmor(t, parent, []string{"KARMOR_OCI_TLS_INSECURE=true"}, "oci", "pull", "-i", evil.Reference(), "-o", dir)
	if code != 1 || out != "" || !strings.Contains(errOut, "unsafe title") {
		t.Errorf("unsafe pull: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	entries, _ := os.ReadDir(parent)
	if got, _ := os.ReadFile(filepath.Join(dir, "ok.yaml")); string(got) != "mine" || len(entries) != 1 {
		t.Errorf("failed pull changed files: ok.yaml %q, parent holds %d entries", got, len(entries))
	}

	code, _, errOut = karmor(t, parent, nil, "oci", "push", "-i", "localhost:5000/Upper", "-f", "x.yaml")
	if code != 2 {
		t.Errorf("bad reference: exit %d, want 2\n%s", code, errOut)
	}
	code, _, _ = karmor(t, parent, nil, "oci", "pull")
	if code != 2 {
		t.Errorf("pull without -i: exit %d, want 2", code)
	}
}

// TestHTTPProxy sends the binary's requests to a registry named registry.test, which only
// the proxy can reach: the push and pull work only through $HTTP_PROXY, and $NO_PROXY
// turns the proxy off.
func TestHTTPProxy(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	target, err := url.Parse(reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	var proxied atomic.Int64
	forward := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "p.yaml"), []byte(mypolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"KARMOR_OCI_TLS_INSECURE=true", "HTTP_PROXY=" + proxy.URL, "NO_PROXY="}
	image := "registry.test:5000/team/p:v1"
	if code, _, errOut := karmor(t, work, env, "oci", "push", "-i", image, "-f", "p.yaml"); code != 0 {
		t.Fatalf("push through the proxy: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := karmor(t, work, env, "oci", "pull", "-i", image, "-o", "out"); code != 0 {
		t.Fatalf("pull through the proxy: exit %d\n%s", code, errOut)
	}
	if proxied.Load() == 0 || reg.Total() == 0 {
		t.Errorf("proxy saw %d requests, registry %d", proxied.Load(), reg.Total())
	}
	before := proxied.Load()
	code, _, _ := karmor(t, work, append(env, "NO_PROXY=registry.test"), "oci", "pull", "-i", image, "-o", "out2", "--timeout", "5s")
	if code != 1 || proxied.Load() != before {
		t.Errorf("with NO_PROXY: exit %d, proxy saw %d more requests; want a direct (failing) connection", code, proxied.Load()-before)
	}
}
