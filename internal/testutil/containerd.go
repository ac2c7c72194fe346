package testutil

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The containerd the tests run: built from the Go module proxy (see ../shared/docs/runtimes.md),
// because Debian's containerd 1.6 has no NRI.
const (
	ContainerdInstallHint = "CGO_ENABLED=0 go install -tags no_btrfs github.com/containerd/containerd/v2/cmd/containerd@v2.4.2 " +
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v2.4.2 github.com/containerd/containerd/v2/cmd/ctr@v2.4.2"
	CrictlInstallHint = "go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0"
	// SandboxImage is the pause image containerd is pinned to; the tests build it from busybox
	// (no registry is reachable) and also use it for their containers.
	SandboxImage = "registry.k8s.io/pause:3.10"
	// K8sNamespace is the containerd namespace CRI uses.
	K8sNamespace = "k8s.io"
)

// ContainerdOptions choose how a test containerd is configured.
type ContainerdOptions struct {
	// DisableNRI turns containerd's NRI plugin off.
	DisableNRI bool
	// RuncBinary is the BinaryName of the runc runtime (for example karmor-runc); "" uses runc.
	RuncBinary string
	// NRIPluginDir and NRIPluginConfigDir are NRI's plugin_path and plugin_config_path
	// (pre-registered plugins containerd starts itself); "" uses empty dirs of the instance.
	NRIPluginDir       string
	NRIPluginConfigDir string
	// Env is added to containerd's environment; its shims and runc inherit it.
	Env []string
	// PodAnnotations are the pod annotation keys (globs) containerd passes into containers' OCI
	// specs (the runc runtime's pod_annotations); by default it passes none.
	PodAnnotations []string
}

// Containerd is one containerd v2 process started for tests, with everything (root, state,
// sockets, runc's state) under its own directory, so it never touches the host's containerd.
type Containerd struct {
	Dir       string // everything of this instance lives here
	Socket    string // containerd's gRPC socket
	NRISocket string // NRI's socket (even when NRI is disabled, the path it would use)
	// RuncRoot is runc's --root for containers of the k8s.io namespace (what karmord's
	// reconciliation reads for this instance).
	RuncRoot string
	LogPath  string

	containerdBin, ctrBin, crictlBin string
	opts                             ContainerdOptions
	cmd                              *exec.Cmd
	exited                           chan struct{}
	logFile                          *os.File
}

// GoBinDir returns $(go env GOPATH)/bin, where `go install` puts containerd, ctr and crictl.
func GoBinDir() string {
	if p := os.Getenv("GOPATH"); p != "" {
		return filepath.Join(filepath.SplitList(p)[0], "bin")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, "go", "bin")
}

// lookTool finds a tool on PATH or in GoBinDir.
func lookTool(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	p := filepath.Join(GoBinDir(), name)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		return p, true
	}
	return "", false
}

// ContainerdBinary returns the containerd program (on PATH or in GoBinDir), or stops the test
// (see Unavailable).
func ContainerdBinary(t testing.TB) string {
	t.Helper()
	p, ok := lookTool("containerd")
	if !ok {
		Unavailable(t, "containerd not found on PATH or in %s; install it with: %s (.ci/run does)", GoBinDir(), ContainerdInstallHint)
	}
	return p
}

// RequireContainerd skips loudly unless root and containerd v2, its runc shim, ctr, crictl and
// runc are installed (on PATH or in $(go env GOPATH)/bin).
func RequireContainerd(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "runc", "apt-get install runc")
	for _, tool := range []string{"containerd", "containerd-shim-runc-v2", "ctr"} {
		if _, ok := lookTool(tool); !ok {
			Unavailable(t, "%s not found on PATH or in %s; install it with: %s (.ci/run does)", tool, GoBinDir(), ContainerdInstallHint)
		}
	}
	if _, ok := lookTool("crictl"); !ok {
		Unavailable(t, "crictl not found on PATH or in %s; install it with: %s (.ci/run does)", GoBinDir(), CrictlInstallHint)
	}
}

// StartContainerd starts a containerd with CRI and (unless disabled) NRI in a new directory,
// imports the busybox sandbox image, and stops it (removing its pods) when the test ends.
// Starting one takes about a second; tests of a package share one through subtests and Restart.
func StartContainerd(t testing.TB, opts ContainerdOptions) *Containerd {
	t.Helper()
	RequireContainerd(t)
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Containerd{
		Dir:       dir,
		Socket:    filepath.Join(dir, "containerd.sock"),
		NRISocket: filepath.Join(dir, "nri.sock"),
		RuncRoot:  filepath.Join(dir, "runc", K8sNamespace),
		LogPath:   filepath.Join(dir, "containerd.log"),
	}
	c.containerdBin, _ = lookTool("containerd")
	c.ctrBin, _ = lookTool("ctr")
	c.crictlBin, _ = lookTool("crictl")
	t.Cleanup(func() {
		c.removeAllPods()
		c.Stop(t)
		c.unmountUnder()
		if t.Failed() {
			t.Logf("containerd log (%s), last lines:\n%s", c.LogPath, TailFile(c.LogPath, 40))
		}
		_ = os.RemoveAll(dir)
	})
	if err := c.start(opts); err != nil {
		t.Fatalf("start containerd: %v\nlog:\n%s", err, TailFile(c.LogPath, 40))
	}
	if err := c.importSandboxImage(t); err != nil {
		t.Fatalf("import sandbox image: %v", err)
	}
	return c
}

// Options returns the options the running instance was started with.
func (c *Containerd) Options() ContainerdOptions { return c.opts }

// Restart stops containerd and starts it again with opts, keeping its root (images, pods'
// records) and running containers, as a runtime upgrade or crash does.
func (c *Containerd) Restart(t testing.TB, opts ContainerdOptions) {
	t.Helper()
	c.Stop(t)
	if err := c.start(opts); err != nil {
		t.Fatalf("restart containerd: %v\nlog:\n%s", err, TailFile(c.LogPath, 40))
	}
}

func (c *Containerd) start(opts ContainerdOptions) error {
	c.opts = opts
	for _, d := range []string{"root", "state", "logs", "runc", "nri-plugins", "nri-conf"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return err
		}
	}
	ep := "unix://" + c.Socket
	crictlCfg := fmt.Sprintf("runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 20\n", ep, ep)
	if err := os.WriteFile(filepath.Join(c.Dir, "crictl.yaml"), []byte(crictlCfg), 0o644); err != nil {
		return err
	}
	// containerd leaves its NRI socket behind when it stops; with NRI off, none may be there.
	if err := os.Remove(c.NRISocket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	cfgPath := filepath.Join(c.Dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(c.config(opts)), 0o644); err != nil {
		return err
	}
	logf, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.containerdBin, "--config", cfgPath, "--log-level", "info")
	cmd.Stdout, cmd.Stderr = logf, logf
	// The shim is found on PATH; put the Go bin dir first so the v2 shim is the one found.
	cmd.Env = append(withPath(os.Environ(), GoBinDir()), opts.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	c.cmd, c.logFile, c.exited = cmd, logf, make(chan struct{})
	go func(exited chan struct{}) { _ = cmd.Wait(); close(exited) }(c.exited)

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("containerd exited during start-up: %v", cmd.ProcessState)
		default:
		}
		if _, err := os.Stat(c.Socket); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			out, err := c.CrictlCommand(ctx, "info").CombinedOutput()
			cancel()
			if err == nil && bytes.Contains(out, []byte(`"RuntimeReady"`)) {
				if opts.DisableNRI {
					return nil
				}
				if _, err := os.Stat(c.NRISocket); err == nil {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return errors.New("containerd not ready after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// config renders containerd's configuration: the recipe of ../shared/docs/runtimes.md.
func (c *Containerd) config(opts ContainerdOptions) string {
	pluginDir, pluginConf := opts.NRIPluginDir, opts.NRIPluginConfigDir
	if pluginDir == "" {
		pluginDir = filepath.Join(c.Dir, "nri-plugins")
	}
	if pluginConf == "" {
		pluginConf = filepath.Join(c.Dir, "nri-conf")
	}
	runtimeExtra := ""
	if len(opts.PodAnnotations) > 0 {
		quoted := make([]string, len(opts.PodAnnotations))
		for i, a := range opts.PodAnnotations {
			quoted[i] = fmt.Sprintf("%q", a)
		}
		runtimeExtra = fmt.Sprintf("    pod_annotations = [%s]\n", strings.Join(quoted, ", "))
	}
	binary := ""
	if opts.RuncBinary != "" {
		binary = fmt.Sprintf("      BinaryName = %q\n", opts.RuncBinary)
	}
	return fmt.Sprintf(`version = 3
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "native"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = %q
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
%s    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      Root = %q
%s[plugins."io.containerd.nri.v1.nri"]
  disable = %t
  socket_path = %q
  plugin_path = %q
  plugin_config_path = %q
`, filepath.Join(c.Dir, "root"), filepath.Join(c.Dir, "state"), c.Socket, SandboxImage,
		runtimeExtra, filepath.Join(c.Dir, "runc"), binary, opts.DisableNRI, c.NRISocket, pluginDir, pluginConf)
}

// Stop stops containerd (SIGTERM, then SIGKILL after 10 s). Running containers and their shims
// stay, as with a real containerd.
func (c *Containerd) Stop(t testing.TB) {
	t.Helper()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd = nil
	c.logFile.Close()
}

// crictlArgs prefixes args with the endpoint flags of this instance.
func (c *Containerd) crictlArgs(args ...string) []string {
	ep := "unix://" + c.Socket
	return append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "20s"}, args...)
}

// CrictlCommand returns a crictl command aimed at this instance.
func (c *Containerd) CrictlCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.crictlBin, c.crictlArgs(args...)...)
	// Our own crictl.yaml (written at start), so the host's /etc/crictl.yaml is never read.
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE="+filepath.Join(c.Dir, "crictl.yaml"))
	return cmd
}

// Crictl runs crictl against this instance and returns its trimmed stdout, failing the test on error.
func (c *Containerd) Crictl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.CrictlErr(args...)
	if err != nil {
		t.Fatalf("crictl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// CrictlErr runs crictl against this instance; the error carries crictl's stderr.
func (c *Containerd) CrictlErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := c.CrictlCommand(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// PodSpec describes a host-network pod with one container, for crictl.
type PodSpec struct {
	Name, Namespace, UID string
	Labels               map[string]string
	Annotations          map[string]string
	ContainerName        string   // "main" when empty
	Command              []string // sleep for a long time when empty
}

// Pod is a pod started by StartPod.
type Pod struct {
	ID          string // the sandbox id
	ContainerID string
}

// writeJSON writes v as JSON into the instance's directory and returns the file's path.
func (c *Containerd) writeJSON(name string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	p := filepath.Join(c.Dir, name)
	return p, os.WriteFile(p, b, 0o644)
}

// PodConfigs writes the pod and container configurations crictl takes and returns their paths.
func (c *Containerd) PodConfigs(spec PodSpec) (podPath, ctrPath string, err error) {
	if spec.Namespace == "" {
		spec.Namespace = "default"
	}
	if spec.UID == "" {
		spec.UID = spec.Name + "-uid"
	}
	if spec.ContainerName == "" {
		spec.ContainerName = "main"
	}
	if len(spec.Command) == 0 {
		spec.Command = []string{"/bin/sleep", "1000000"}
	}
	logDir := filepath.Join(c.Dir, "logs", spec.Name)
	pod := map[string]any{
		"metadata":      map[string]any{"name": spec.Name, "namespace": spec.Namespace, "uid": spec.UID, "attempt": 0},
		"labels":        spec.Labels,
		"annotations":   spec.Annotations,
		"log_directory": logDir,
		// No CNI on these machines: the pod shares the host's network (NamespaceMode NODE = 2).
		"linux": map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
	}
	ctr := map[string]any{
		"metadata": map[string]any{"name": spec.ContainerName},
		"image":    map[string]any{"image": SandboxImage},
		"command":  spec.Command,
		"log_path": spec.ContainerName + ".log",
		"linux":    map[string]any{},
	}
	if podPath, err = c.writeJSON("pod-"+spec.Name+".json", pod); err != nil {
		return "", "", err
	}
	ctrPath, err = c.writeJSON("ctr-"+spec.Name+".json", ctr)
	return podPath, ctrPath, err
}

// StartPod runs `crictl runp`, `create` and `start` for spec and returns the ids.
func (c *Containerd) StartPod(t testing.TB, spec PodSpec) Pod {
	t.Helper()
	pod, err := c.StartPodErr(spec)
	if err != nil {
		t.Fatalf("start pod %s: %v", spec.Name, err)
	}
	return pod
}

// StartPodErr is StartPod returning the error instead of failing the test.
func (c *Containerd) StartPodErr(spec PodSpec) (Pod, error) {
	podPath, ctrPath, err := c.PodConfigs(spec)
	if err != nil {
		return Pod{}, err
	}
	var p Pod
	if p.ID, err = c.CrictlErr("runp", podPath); err != nil {
		return p, fmt.Errorf("runp: %w", err)
	}
	if p.ContainerID, err = c.CrictlErr("create", p.ID, ctrPath, podPath); err != nil {
		return p, fmt.Errorf("create: %w", err)
	}
	if _, err = c.CrictlErr("start", p.ContainerID); err != nil {
		return p, fmt.Errorf("start: %w", err)
	}
	return p, nil
}

// RemovePod stops and removes a pod and its containers.
func (c *Containerd) RemovePod(t testing.TB, podID string) {
	t.Helper()
	c.Crictl(t, "stopp", podID)
	c.Crictl(t, "rmp", podID)
}

func (c *Containerd) removeAllPods() {
	if c.cmd == nil {
		return
	}
	_, _ = c.CrictlErr("rmp", "--all", "--force")
}

// unmountUnder unmounts whatever containerd left mounted in the instance's directory (sandbox
// shm mounts of pods that could not be removed), deepest first, so the directory can be removed.
func (c *Containerd) unmountUnder() {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], c.Dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

// importSandboxImage builds an OCI image archive of the busybox rootfs (its command sleeps) named
// SandboxImage and imports it into the k8s.io namespace with ctr.
func (c *Containerd) importSandboxImage(t testing.TB) error {
	rootfs := BusyboxRootfs(t)
	archive := filepath.Join(c.Dir, "pause.tar")
	if err := writeOCIArchive(archive, rootfs, SandboxImage, []string{"/bin/sleep", "1000000"}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.ctrBin, "--address", c.Socket, "--namespace", K8sNamespace,
		"images", "import", "--all-platforms", archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import: %v\n%s", err, out)
	}
	return nil
}

// writeOCIArchive writes an OCI image layout tarball of one layer (the rootfs directory) whose
// index names the image ref, as `podman save --format oci-archive` does.
func writeOCIArchive(path, rootfs, ref string, cmd []string) error {
	layer, diffID, err := tarDir(rootfs)
	if err != nil {
		return err
	}
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Cmd": cmd, "Env": []string{"PATH=/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	if err != nil {
		return err
	}
	desc := func(mediaType string, b []byte) map[string]any {
		return map[string]any{"mediaType": mediaType, "digest": digestOf(b), "size": len(b)}
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{desc("application/vnd.oci.image.layer.v1.tar", layer)},
	})
	if err != nil {
		return err
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	md := desc("application/vnd.oci.image.manifest.v1+json", manifest)
	md["annotations"] = map[string]string{"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": tag}
	md["platform"] = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{md}})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		body []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(config), config},
		{blobPath(manifest), manifest},
		{blobPath(layer), layer},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(f.body); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobPath(b []byte) string { return "blobs/sha256/" + strings.TrimPrefix(digestOf(b), "sha256:") }

// tarDir returns an uncompressed tar of dir's contents (regular files, dirs, symlinks) and its
// digest, which for an uncompressed layer is also its diff id.
func tarDir(dir string) ([]byte, string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), digestOf(buf.Bytes()), nil
}

// withPath returns env with dir prepended to PATH.
func withPath(env []string, dir string) []string {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			kv = "PATH=" + dir + string(os.PathListSeparator) + v
			found = true
		}
		out = append(out, kv)
	}
	if !found {
		out = append(out, "PATH="+dir+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return out
}
