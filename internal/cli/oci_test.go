package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/registrytest"
)

// ociCLI runs karmor in-process with stdin, isolated from the machine's Docker
// credentials and $KARMOR_OCI_TLS_INSECURE.
func ociCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func isolateOCI(t *testing.T) {
	t.Helper()
	t.Setenv(oci.EnvPlainHTTP, "")
	t.Setenv("DOCKER_CONFIG", t.TempDir())
}

func ociPolicy(name string) string {
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: %s
  namespace: web
spec:
  selector:
    matchLabels:
      app: nginx
  process:
    matchPaths:
    - path: /bin/sh
  action: Block
`, name)
}

func writePolicies(t *testing.T, dir string, names ...string) []string {
	t.Helper()
	var paths []string
	for _, n := range names {
		p := filepath.Join(dir, n+".yaml")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(ociPolicy(filepath.Base(n))), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

var pinnedLine = regexp.MustCompile(`^(\S+)@sha256:[0-9a-f]{64}\n$`)

func TestOCIPushPullInspectText(t *testing.T) {
	isolateOCI(t)
	reg := registrytest.New(t, registrytest.Options{})
	src := t.TempDir()
	writePolicies(t, src, "a", "nested/b")
	ref := reg.Host + "/myimage:latest"

	code, out, errOut := ociCLI(t, "", "oci", "push", "-i", ref, "-f", src, "--plain-http", "--source", "https://example.com/p", "--annotation", "team=sec")
	if code != 0 {
		t.Fatalf("push: exit %d\n%s", code, errOut)
	}
	m := pinnedLine.FindStringSubmatch(out)
	if m == nil || m[1] != ref {
		t.Fatalf("push stdout = %q, want %s@sha256:... alone", out, ref)
	}
	pinned := strings.TrimSpace(out)

	work := t.TempDir()
	t.Chdir(work)
	code, out, errOut = ociCLI(t, "", "oci", "pull", "-i", ref, "--plain-http")
	if code != 0 {
		t.Fatalf("pull into the current directory: exit %d\n%s", code, errOut)
	}
	if out != "a.yaml\nb.yaml\n" {
		t.Errorf("pull stdout = %q", out)
	}
	if got, _ := os.ReadFile(filepath.Join(work, "b.yaml")); string(got) != ociPolicy("b") {
		t.Errorf("b.yaml = %q", got)
	}

	dir := filepath.Join(work, "new", "dir")
	if code, _, errOut = ociCLI(t, "", "oci", "pull", "-i", pinned, "-o", dir, "--plain-http"); code != 0 {
		t.Fatalf("pull by digest into a new directory: exit %d\n%s", code, errOut)
	}
	code, out, _ = ociCLI(t, "", "oci", "pull", "-i", pinned, "-o", dir, "--plain-http")
	if code != 0 || !strings.Contains(out, filepath.Join(dir, "a.yaml")+" (unchanged)") {
		t.Errorf("second pull: exit %d, stdout %q", code, out)
	}

	code, out, errOut = ociCLI(t, "", "oci", "inspect", "-i", ref, "--plain-http")
	if code != 0 {
		t.Fatalf("inspect: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"Digest:    sha256:", "Created:", "org.opencontainers.image.source: https://example.com/p", "team: sec",
		"a.yaml", "KubeArmorPolicy", "web/a", "web/b"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	entries, _ := os.ReadDir(work)
	if len(entries) != 3 { // a.yaml, b.yaml, new: inspect wrote nothing
		t.Errorf("work dir holds %d entries", len(entries))
	}
}

func TestOCIJSONOutput(t *testing.T) {
	isolateOCI(t)
	reg := registrytest.New(t, registrytest.Options{})
	paths := writePolicies(t, t.TempDir(), "one", "two")
	ref := reg.Host + "/team/p:v1"
	code, out, errOut := ociCLI(t, "", "oci", "push", "-i", ref, "-f", paths[0], "-f", paths[1], "--plain-http", "--format", "json")
	if code != 0 {
		t.Fatalf("push: exit %d\n%s", code, errOut)
	}
	var pushed struct {
		Reference, Digest string
		Uploaded          int
		Files             []struct {
			File, Digest string
			Size         int64
		}
	}
	if err := json.Unmarshal([]byte(out), &pushed); err != nil {
		t.Fatalf("push JSON: %v\n%s", err, out)
	}
	if pushed.Reference != ref+"@"+pushed.Digest || len(pushed.Files) != 2 || pushed.Files[1].File != "two.yaml" || pushed.Uploaded != 3 {
		t.Errorf("push JSON = %+v", pushed)
	}

	dir := t.TempDir()
	code, out, _ = ociCLI(t, "", "oci", "pull", "-i", ref, "-o", dir, "--plain-http", "--format", "json")
	var pulled struct {
		Digest string
		Files  []struct {
			File, Path string
			Unchanged  bool
		}
	}
	if err := json.Unmarshal([]byte(out), &pulled); err != nil || code != 0 {
		t.Fatalf("pull JSON: exit %d, %v\n%s", code, err, out)
	}
	if pulled.Digest != pushed.Digest || len(pulled.Files) != 2 || pulled.Files[0].Path != filepath.Join(dir, "one.yaml") || pulled.Files[0].Unchanged {
		t.Errorf("pull JSON = %+v", pulled)
	}

	code, out, _ = ociCLI(t, "", "oci", "inspect", "-i", ref, "--plain-http", "--format", "json")
	var in oci.Inspection
	if err := json.Unmarshal([]byte(out), &in); err != nil || code != 0 {
		t.Fatalf("inspect JSON: exit %d, %v\n%s", code, err, out)
	}
	if string(in.Digest) != pushed.Digest || len(in.Policies) != 2 || in.Policies[0].Documents[0].Name != "one" || in.Policies[0].Documents[0].Kind != "KubeArmorPolicy" {
		t.Errorf("inspect JSON = %+v", in)
	}
}

func TestOCIUsageErrors(t *testing.T) {
	isolateOCI(t)
	file := writePolicies(t, t.TempDir(), "p")[0]
	for _, args := range [][]string{
		{"oci"},
		{"oci", "push", "-f", file},
		{"oci", "push", "-i", "localhost:5000/p"},
		{"oci", "push", "-i", "Bad/Ref", "-f", file},
		{"oci", "push", "-i", "localhost:5000/p", "-f", file, "--format", "yaml"},
		{"oci", "push", "-i", "localhost:5000/p", "-f", file, "--annotation", "novalue"},
		{"oci", "push", "-i", "localhost:5000/p", "-f", file, "--created", "yesterday"},
		{"oci", "push", "-i", "localhost:5000/p", "-f", file, "-u", "alice"},
		{"oci", "push", "-i", "localhost:5000/p", "-f", file, "-p", "x", "--password-stdin"},
		{"oci", "pull", "-i", "localhost:5000/p", "--max-layer-size", "lots"},
		{"oci", "pull", "-i", "localhost:5000/p", "--concurrency", "0"},
		{"oci", "pull", "-i", "localhost:5000/p", "--no-such-flag"},
		{"oci", "inspect"},
		{"oci", "pull", "-i", "localhost:5000/p", "extra-arg"},
	} {
		code, _, errOut := ociCLI(t, "", args...)
		if code != ExitUsage {
			t.Errorf("karmor %s: exit %d, want %d\n%s", strings.Join(args, " "), code, ExitUsage, errOut)
		}
	}
}

func TestOCIFailuresExitOne(t *testing.T) {
	isolateOCI(t)
	reg := registrytest.New(t, registrytest.Options{})
	src := t.TempDir()
	bad := filepath.Join(src, "bad.yaml")
	if err := os.WriteFile(bad, []byte(ociPolicy("bad")+"  bogus: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := ociCLI(t, "", "oci", "push", "-i", reg.Host+"/p:1", "-f", bad, "--plain-http")
	if code != ExitFailure || out != "" || !strings.Contains(errOut, "bad.yaml") {
		t.Errorf("invalid policy: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if reg.Total() != 0 {
		t.Errorf("an invalid push reached the registry: %s", reg.Counter)
	}
	dup := writePolicies(t, t.TempDir(), "same")[0]
	code, _, errOut = ociCLI(t, "", "oci", "push", "-i", reg.Host+"/p:1", "-f", writePolicies(t, src, "same")[0], "-f", dup, "--plain-http")
	if code != ExitFailure || !strings.Contains(errOut, "two files are named same.yaml") {
		t.Errorf("duplicate names: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = ociCLI(t, "", "oci", "pull", "-i", reg.Host+"/missing:1", "-o", t.TempDir(), "--plain-http")
	if code != ExitFailure || !strings.Contains(errOut, "not found") {
		t.Errorf("missing artifact: exit %d, stderr %q", code, errOut)
	}
}

func TestOCIPasswordStdinAndEnvironment(t *testing.T) {
	isolateOCI(t)
	reg := registrytest.New(t, registrytest.Options{Auth: registrytest.AuthBasic, Users: map[string]string{"ci": "t0ken"}})
	file := writePolicies(t, t.TempDir(), "p")[0]
	t.Setenv(oci.EnvPlainHTTP, "true")
	code, _, errOut := ociCLI(t, "t0ken\n", "oci", "push", "-i", reg.Host+"/p:1", "-f", file, "-u", "ci", "--password-stdin")
	if code != 0 {
		t.Fatalf("push with --password-stdin: exit %d\n%s", code, errOut)
	}
	code, _, errOut = ociCLI(t, "", "oci", "pull", "-i", reg.Host+"/p:1", "-o", t.TempDir())
	if code != ExitFailure || !strings.Contains(errOut, "docker login "+reg.Host) {
		t.Errorf("anonymous pull: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = ociCLI(t, "", "oci", "pull", "-i", reg.Host+"/p:1", "-o", t.TempDir(), "-u", "ci", "-p", "t0ken")
	if code != 0 || !strings.Contains(errOut, "prefer --password-stdin") {
		t.Errorf("pull with -p: exit %d, stderr %q", code, errOut)
	}
}
