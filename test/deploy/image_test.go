package deploy

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/imagebuild"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// TestImagesRunUnderPodman: the amd64 images, built from this tree's programs into an OCI
// layout, are pulled by Podman from the layout; karmord's image serves its socket (on a host
// directory) and answers `karmor status` from the host as ready; the tools image and
// karmor-controller's run their programs as the non-root user; no image has a shell.
func TestImagesRunUnderPodman(t *testing.T) {
	testutil.RequirePodman(t)
	if out, err := exec.Command("go", "env", "GOARCH").Output(); err != nil || strings.TrimSpace(string(out)) != "amd64" {
		testutil.Unavailable(t, "the image test runs the amd64 image, on an amd64 host")
	}
	// The programs as testutil builds them (static, CGO off), where imagebuild looks for them.
	bins := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bins, "linux-amd64"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, spec := range imagebuild.Images {
		for _, p := range spec.Programs {
			if err := os.Symlink(testutil.Binary(t, p), filepath.Join(bins, "linux-amd64", p)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Podman names an image pulled from a layout after its path, which must be lower case.
	dir, err := os.MkdirTemp("", "karmor-layout-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ids := map[string]string{}
	for _, spec := range imagebuild.Images {
		idx, err := imagebuild.Build(spec, bins, "test", []string{"amd64"})
		if err != nil {
			t.Fatal(err)
		}
		if err := imagebuild.WriteLayout(dir, spec.Name, idx); err != nil {
			t.Fatal(err)
		}
		out := podman(t, "pull", "-q", "oci:"+dir+":"+spec.Name)
		lines := strings.Fields(out)
		ids[spec.Name] = lines[len(lines)-1]
		t.Cleanup(func() { _ = exec.Command("podman", "rmi", "-f", ids[spec.Name]).Run() })
		var cfg []struct {
			Config struct{ User string }
		}
		if err := json.Unmarshal([]byte(podman(t, "image", "inspect", ids[spec.Name])), &cfg); err != nil || len(cfg) != 1 || cfg[0].Config.User != spec.User {
			t.Errorf("%s: image user %+v (%v), want %s", spec.Name, cfg, err, spec.User)
		}
		if out, err := exec.Command("podman", "run", "--rm", "--net=none", "--entrypoint", "/bin/sh", ids[spec.Name], "-c", "true").CombinedOutput(); err == nil {
			t.Errorf("%s has a shell:\n%s", spec.Name, out)
		}
	}

	if out := podman(t, "run", "--rm", "--net=none", ids["karmor"], "version"); !strings.Contains(out, "karmor") {
		t.Errorf("karmor version in its image: %q", out)
	}
	for _, p := range []string{"karmor-hook", "karmor-nri"} {
		if out := podman(t, "run", "--rm", "--net=none", "--entrypoint", "/usr/local/bin/"+p, ids["karmor"], "--version"); !strings.HasPrefix(out, p+" ") {
			t.Errorf("%s --version in the tools image: %q", p, out)
		}
	}

	// karmor-controller's image: its program, as the non-root user the chart's Deployment sets.
	if out := podman(t, "run", "--rm", "--net=none", "--user", "65532:65532", "--read-only", ids["karmor-controller"], "--version"); !strings.Contains(out, "karmor-controller") {
		t.Errorf("karmor-controller --version in its image: %q", out)
	}

	// karmord from its image, its socket in a host directory: ready, from the host's side.
	run, err := os.MkdirTemp("", "kimg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	state := t.TempDir()
	name := "karmord-image-test"
	podman(t, "run", "-d", "--name", name, "--net=none", "--read-only",
		"-v", run+":/run/karmor", "-v", state+":/var/lib/karmor", ids["karmord"], "--runtime-root", "/run/karmor/none")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("podman", "logs", name).CombinedOutput()
			t.Logf("karmord's log in its container:\n%s", out)
		}
		_ = exec.Command("podman", "rm", "-f", "-t", "2", name).Run()
	})
	cl := agentapi.NewClient(filepath.Join(run, "karmor.sock"))
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		h, err := cl.Health(ctx)
		cancel()
		if err == nil && h.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("karmord in its image never answered ready: %+v %v", h, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, err := exec.Command(testutil.Binary(t, "karmor"), "status", "--socket", filepath.Join(run, "karmor.sock")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": ready") {
		t.Errorf("karmor status against karmord's image: %v\n%s", err, out)
	}
}

func podman(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("podman", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
