package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/karmor/karmor/internal/testutil"
)

// profiles are the chart's supported set-ups, each a values file in the chart's ci/ directory;
// karmordProfiles are those with karmord (the controller profile has karmor-controller alone).
var (
	karmordProfiles = []string{"containerd", "crio", "kubearmor", "verify"}
	profiles        = append(slices.Clone(karmordProfiles), "controller")
)

// kubeVersions are the Kubernetes versions whose built-in schemas kubectl-validate checks the
// rendered objects against.
var kubeVersions = []string{"1.27", "1.28", "1.29", "1.30"}

func chartDir(t *testing.T) string {
	return filepath.Join(testutil.RepoRoot(t), "deploy", "helm", "karmor")
}

func helmBinary(t *testing.T) string {
	return testutil.RequireCommand(t, "helm", "go install helm.sh/helm/v3/cmd/helm@v3.22.0 (.ci/install.d/40-deploy.sh)")
}

// render runs helm template for a profile (and more --set flags) and returns its output.
func render(t *testing.T, profile string, set ...string) []byte {
	t.Helper()
	return renderArgs(t, profile, set)
}

// renderArgs is render with more helm flags (e.g. --include-crds).
func renderArgs(t *testing.T, profile string, set []string, flags ...string) []byte {
	t.Helper()
	args := append([]string{"template", "karmor", chartDir(t), "--namespace", "karmor", "-f", filepath.Join(chartDir(t), "ci", profile+"-values.yaml")}, flags...)
	for _, s := range set {
		args = append(args, "--set", s)
	}
	cmd := exec.Command(helmBinary(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// object is one rendered Kubernetes object, decoded loosely.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	HostPID        bool        `yaml:"hostPID"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
	Volumes        []struct {
		Name     string `yaml:"name"`
		HostPath *struct {
			Path string `yaml:"path"`
		} `yaml:"hostPath"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
}

func decodeObjects(t *testing.T, manifest []byte) []object {
	t.Helper()
	var objs []object
	dec := yaml.NewDecoder(bytes.NewReader(manifest))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		if o.Kind != "" {
			objs = append(objs, o)
		}
	}
}

func daemonSet(t *testing.T, objs []object) podSpec {
	t.Helper()
	for _, o := range objs {
		if o.Kind == "DaemonSet" {
			return o.Spec.Template.Spec
		}
	}
	t.Fatal("no DaemonSet rendered")
	return podSpec{}
}

func kinds(objs []object) []string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.Kind)
	}
	slices.Sort(ks)
	return ks
}

func hostPaths(p podSpec) []string {
	var paths []string
	for _, v := range p.Volumes {
		if v.HostPath != nil {
			paths = append(paths, v.HostPath.Path)
		}
	}
	slices.Sort(paths)
	return paths
}

func findContainer(cs []container, name string) *container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

// TestChartProfiles: helm lint --strict passes for each profile, and what helm template renders
// has exactly the host paths, containers, RBAC and flags the profile needs.
func TestChartProfiles(t *testing.T) {
	helm := helmBinary(t)
	want := map[string]struct {
		kinds     []string
		hostPaths []string
		nri       bool
		flags     []string // in karmord's args
		initArgs  []string // in the init step's command
	}{
		"containerd": {kinds: []string{"DaemonSet", "ServiceAccount"},
			hostPaths: []string{"/etc/containerd", "/opt/karmor/bin", "/run/containerd/runc", "/run/karmor", "/var/lib/karmor", "/var/run/nri"},
			nri:       true, flags: []string{"--runtime-root /run/containerd/runc/*", "--health-addr 0.0.0.0:9465"},
			initArgs: []string{"--runtime containerd", "--nri-start external", "--hook-path /opt/karmor/bin/karmor-hook"}},
		// No DaemonSet: TestControllerDeployment checks the rest.
		"controller": {kinds: []string{"ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "ServiceAccount"}},
		"crio": {kinds: []string{"DaemonSet", "ServiceAccount"},
			hostPaths: []string{"/opt/karmor/bin", "/run/crun", "/run/karmor", "/run/runc", "/usr/share/containers/oci/hooks.d", "/var/lib/karmor"},
			flags:     []string{"--runtime-root /run/runc", "--runtime-root /run/crun"},
			initArgs:  []string{"--runtime cri-o", "--hooks-dir /usr/share/containers/oci/hooks.d"}},
		"kubearmor": {kinds: []string{"DaemonSet", "ServiceAccount"},
			hostPaths: []string{"/etc/containerd", "/opt/karmor/bin", "/run/containerd/runc", "/run/karmor", "/var/lib/karmor", "/var/run/kubearmor", "/var/run/nri"},
			nri:       true, flags: []string{"--kubearmor-socket /var/run/kubearmor/ka.sock", "--metrics-addr 0.0.0.0:9464"}},
		"verify": {kinds: []string{"ClusterRole", "ClusterRoleBinding", "DaemonSet", "ServiceAccount"},
			hostPaths: []string{"/opt/karmor/bin", "/run/crun", "/run/karmor", "/run/runc", "/usr/share/containers/oci/hooks.d", "/var/lib/karmor"},
			flags: []string{"--policy-ref registry.example.com/team/policies:prod", "--registry-config /etc/karmor/registry/config.json",
				"--verify-key /etc/karmor/verify/cosign.pub", "--kube-pod-labels"}},
	}
	for _, profile := range profiles {
		t.Run(profile, func(t *testing.T) {
			w := want[profile]
			values := filepath.Join(chartDir(t), "ci", profile+"-values.yaml")
			if out, err := exec.Command(helm, "lint", "--strict", chartDir(t), "-f", values).CombinedOutput(); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			objs := decodeObjects(t, render(t, profile))
			if got := kinds(objs); !slices.Equal(got, w.kinds) {
				t.Errorf("objects %v, want %v", got, w.kinds)
			}
			if !slices.Contains(karmordProfiles, profile) {
				return
			}
			pod := daemonSet(t, objs)
			if got := hostPaths(pod); !slices.Equal(got, w.hostPaths) {
				t.Errorf("host paths %v, want %v", got, w.hostPaths)
			}
			if !pod.HostPID {
				t.Error("karmord needs the host's pid namespace")
			}
			if (findContainer(pod.Containers, "karmor-nri") != nil) != w.nri {
				t.Errorf("karmor-nri sidecar present: %v, want %v", !w.nri, w.nri)
			}
			karmord := findContainer(pod.Containers, "karmord")
			if karmord == nil {
				t.Fatal("no karmord container")
			}
			args := strings.Join(karmord.Args, " ")
			for _, f := range w.flags {
				if !strings.Contains(args, f) {
					t.Errorf("karmord's args lack %q: %s", f, args)
				}
			}
			initStep := findContainer(pod.InitContainers, "install-hook")
			if initStep == nil {
				t.Fatal("no install-hook init container")
			}
			cmd := strings.Join(initStep.Command, " ")
			for _, a := range w.initArgs {
				if !strings.Contains(cmd, a) {
					t.Errorf("init step lacks %q: %s", a, cmd)
				}
			}
			if strings.Contains(cmd, "uninstall") {
				t.Errorf("init step removes something: %s", cmd)
			}
		})
	}
}

// TestChartArgsAreThePrograms: every flag the chart gives karmord, karmor-nri and `karmor hook
// install` is one the programs accept (they parse their flags before --version and --help).
// --verify-key is checked only once karmord has it (the signing work adds it).
func TestChartArgsAreThePrograms(t *testing.T) {
	karmordBin := testutil.Binary(t, "karmord")
	help, _ := exec.Command(karmordBin, "--help").CombinedOutput()
	hasVerifyKey := strings.Contains(string(help), "--verify-key")
	for _, profile := range karmordProfiles {
		pod := daemonSet(t, decodeObjects(t, render(t, profile)))
		args := findContainer(pod.Containers, "karmord").Args
		if !hasVerifyKey {
			for i := 0; i < len(args); i++ {
				if args[i] == "--verify-key" {
					t.Logf("%s: karmord has no --verify-key yet; %s not checked", profile, args[i+1])
					args = slices.Delete(args, i, i+2)
					i--
				}
			}
		}
		if out, err := exec.Command(karmordBin, append(args, "--version")...).CombinedOutput(); err != nil {
			t.Errorf("%s: karmord refuses the chart's flags: %v\n%s", profile, err, out)
		}
		if nriC := findContainer(pod.Containers, "karmor-nri"); nriC != nil {
			cmd := append([]string{}, nriC.Command[1:]...)
			if out, err := exec.Command(testutil.Binary(t, "karmor-nri"), append(cmd, "-version")...).CombinedOutput(); err != nil {
				t.Errorf("%s: karmor-nri refuses the chart's flags: %v\n%s", profile, err, out)
			}
		}
		initCmd := findContainer(pod.InitContainers, "install-hook").Command
		if out, err := exec.Command(testutil.Binary(t, "karmor"), append(initCmd[1:], "--help")...).CombinedOutput(); err != nil {
			t.Errorf("%s: karmor refuses the init step's flags: %v\n%s", profile, err, out)
		}
	}
}

// TestChartRefusesMistakes: an unknown runtime, or verification keys without their names, fail
// at render time instead of producing a DaemonSet that cannot work.
func TestChartRefusesMistakes(t *testing.T) {
	helm := helmBinary(t)
	for name, set := range map[string][]string{
		"unknown runtime":       {"runtime=docker"},
		"verify secret no keys": {"policy.verify.secret=keys"},
	} {
		args := []string{"template", "karmor", chartDir(t)}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		if out, err := exec.Command(helm, args...).CombinedOutput(); err == nil {
			t.Errorf("%s: rendered\n%.300s", name, out)
		}
	}
}

// TestRenderedObjectsValidate: kubectl-validate, offline, finds every object of every profile
// valid against the built-in schemas of each supported Kubernetes version, and finds a wrong
// field (so the check can fail).
func TestRenderedObjectsValidate(t *testing.T) {
	kv := testutil.RequireCommand(t, "kubectl-validate", "go install sigs.k8s.io/kubectl-validate@v0.0.4 (.ci/install.d/40-deploy.sh)")
	dir := t.TempDir()
	var files []string
	for _, profile := range profiles {
		f := filepath.Join(dir, profile+".yaml")
		if err := os.WriteFile(f, render(t, profile), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	manifests, _ := filepath.Glob(filepath.Join(testutil.RepoRoot(t), "deploy", "manifests", "*.yaml"))
	files = append(files, manifests...)
	for _, v := range kubeVersions {
		out, err := exec.Command(kv, append(slices.Clone(files), "--version", v)...).CombinedOutput()
		if err != nil {
			t.Errorf("kubectl-validate --version %s: %v\n%s", v, err, out)
		}
	}
	broken := bytes.Replace(render(t, "crio"), []byte("hostPID: true"), []byte("hostPID: yes-please"), 1)
	bad := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(bad, broken, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(kv, bad, "--version", kubeVersions[0]).CombinedOutput(); err == nil {
		t.Errorf("kubectl-validate accepted hostPID: yes-please\n%s", out)
	}
}

// TestManifestsAreRendered: deploy/manifests are the chart rendered (make manifests), not a
// copy that drifted: karmord for each runtime, and karmor-controller with its CRD.
func TestManifestsAreRendered(t *testing.T) {
	for _, profile := range []string{"containerd", "crio", "controller"} {
		var flags []string
		if profile == "controller" {
			flags = []string{"--include-crds"}
		}
		want := renderArgs(t, profile, []string{"createNamespace=true"}, flags...)
		if !bytes.Equal(readManifest(t, "karmor-"+profile+".yaml"), want) {
			t.Errorf("deploy/manifests/karmor-%s.yaml differs from the chart rendered; run 'make manifests'", profile)
		}
	}
}

func readManifest(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "deploy", "manifests", name))
	if err != nil {
		t.Fatalf("%v (make manifests writes it)", err)
	}
	return b
}
