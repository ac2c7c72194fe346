package oci

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/karmor/karmor/internal/registrytest"
	"github.com/karmor/karmor/internal/testutil"
)

const orasInstallHint = "go install oras.land/oras/cmd/oras@v1.3.6"

// runORAS runs the ORAS CLI in dir with an empty Docker configuration.
func runORAS(t *testing.T, dir string, args ...string) {
	t.Helper()
	oras := testutil.RequireCommand(t, "oras", orasInstallHint)
	cmd := exec.Command(oras, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir(), "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oras %v: %v\n%s", args, err, out)
	}
}

// TestORASPushKarmorPull: files pushed with the ORAS CLI in the upstream format pull
// with karmor into identical files.
func TestORASPushKarmorPull(t *testing.T) {
	testutil.RequireCommand(t, "oras", orasInstallHint)
	reg := registrytest.New(t, registrytest.Options{})
	src := t.TempDir()
	files := policyFiles(3)
	args := []string{"push", "--plain-http", reg.Host + "/oras/policies:v1",
		"--config", "config.json:" + MediaTypeConfig}
	writeFile(t, filepath.Join(src, "config.json"), ConfigData)
	for _, f := range files {
		writeFile(t, filepath.Join(src, f.Name), f.Data)
		args = append(args, f.Name+":"+MediaTypePolicyLayer)
	}
	runORAS(t, src, args...)

	tr := testTransport(t)
	tr.PlainHTTP = true
	dir := t.TempDir()
	res, err := Pull(context.Background(), mustRef(t, reg.Host+"/oras/policies:v1"), dir, PullOptions{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != len(files) {
		t.Errorf("pulled %d files, want %d", len(res.Files), len(files))
	}
	for _, f := range files {
		if got := readFile(t, filepath.Join(dir, f.Name)); got != string(f.Data) {
			t.Errorf("%s differs", f.Name)
		}
	}
}

// TestKarmorPushORASPull: what karmor pushes, `oras pull` writes into identical files.
func TestKarmorPushORASPull(t *testing.T) {
	testutil.RequireCommand(t, "oras", orasInstallHint)
	reg := registrytest.New(t, registrytest.Options{})
	tr := testTransport(t)
	tr.PlainHTTP = true
	files := policyFiles(3)
	if _, err := Push(context.Background(), mustRef(t, reg.Host+"/karmor/policies:v1"), files, PushOptions{Transport: tr}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	runORAS(t, dir, "pull", "--plain-http", reg.Host+"/karmor/policies:v1", "-o", dir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(files) {
		t.Errorf("oras pull wrote %d entries, want %d", len(entries), len(files))
	}
	for _, f := range files {
		if got := readFile(t, filepath.Join(dir, f.Name)); got != string(f.Data) {
			t.Errorf("%s differs", f.Name)
		}
	}
}
