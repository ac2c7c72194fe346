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

// contractRules are the ClusterRole's rules as issue 13's contract lists them, one
// "group/resource verb" string each ("" is the core group). The chart must grant exactly these:
// a rule added to the chart without changing this list (and docs/kubernetes.md) fails
// TestControllerRBACIsTheContract.
var contractRules = expand(
	rule{"karmor.io", []string{"policysources"}, []string{"get", "list", "watch", "update", "patch"}},
	rule{"karmor.io", []string{"policysources/status"}, []string{"get", "update", "patch"}},
	rule{"security.kubearmor.com", []string{"kubearmorpolicies", "kubearmorclusterpolicies", "kubearmorhostpolicies", "kubearmornetworkpolicies"},
		[]string{"get", "list", "watch", "create", "update", "patch", "delete"}},
	rule{"", []string{"secrets", "configmaps"}, []string{"get"}},
	rule{"", []string{"events"}, []string{"create", "patch"}},
	rule{"events.k8s.io", []string{"events"}, []string{"create", "patch"}},
)

// contractLeaseRules are the Role's rules in the leader-election (release) namespace.
var contractLeaseRules = expand(rule{"coordination.k8s.io", []string{"leases"}, []string{"get", "create", "update"}})

type rule struct {
	groups    string
	resources []string
	verbs     []string
}

func expand(rules ...rule) []string {
	var out []string
	for _, r := range rules {
		for _, res := range r.resources {
			for _, v := range r.verbs {
				out = append(out, r.groups+"/"+res+" "+v)
			}
		}
	}
	slices.Sort(out)
	return out
}

// rbacObject is a rendered Role, ClusterRole or binding, decoded strictly enough to compare.
type rbacObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Rules []struct {
		APIGroups       []string `yaml:"apiGroups"`
		Resources       []string `yaml:"resources"`
		Verbs           []string `yaml:"verbs"`
		ResourceNames   []string `yaml:"resourceNames"`
		NonResourceURLs []string `yaml:"nonResourceURLs"`
	} `yaml:"rules"`
	RoleRef struct {
		Kind string `yaml:"kind"`
		Name string `yaml:"name"`
	} `yaml:"roleRef"`
	Subjects []struct {
		Kind      string `yaml:"kind"`
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"subjects"`
}

func decodeAs[T any](t *testing.T, manifest []byte, kind string) []T {
	t.Helper()
	var out []T
	dec := yaml.NewDecoder(bytes.NewReader(manifest))
	for {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		var k struct {
			Kind string `yaml:"kind"`
		}
		if err := node.Decode(&k); err != nil || k.Kind != kind {
			continue
		}
		var v T
		if err := node.Decode(&v); err != nil {
			t.Fatalf("rendered %s: %v", kind, err)
		}
		out = append(out, v)
	}
}

// grants is a role's rules expanded to "group/resource verb" strings; a wildcard or a rule
// naming resources or URLs is kept visibly so that it cannot pass as one of the contract's.
func grants(t *testing.T, r rbacObject) []string {
	var out []string
	for _, ru := range r.Rules {
		if len(ru.ResourceNames) > 0 || len(ru.NonResourceURLs) > 0 {
			t.Errorf("%s %s: rule limited by names or URLs: %+v", r.Kind, r.Metadata.Name, ru)
		}
		for _, g := range ru.APIGroups {
			for _, res := range ru.Resources {
				for _, v := range ru.Verbs {
					out = append(out, g+"/"+res+" "+v)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestControllerRBACIsTheContract: with the controller on, the chart renders one ClusterRole
// granting exactly the contract's rules and one Role granting exactly the Lease rules in the
// release namespace, each bound to karmor-controller's ServiceAccount and to nothing else; the
// same holds in the plain manifest deploy/manifests/karmor-controller.yaml and in the RBAC the
// controller's own tests run it under (internal/controller/testdata/rbac.yaml).
func TestControllerRBACIsTheContract(t *testing.T) {
	for name, manifest := range map[string][]byte{
		"chart":                             render(t, "controller"),
		"chart beside karmord":              render(t, "verify", "controller.enabled=true"),
		"deploy/manifests (make manifests)": readManifest(t, "karmor-controller.yaml"),
	} {
		t.Run(name, func(t *testing.T) {
			croles := decodeAs[rbacObject](t, manifest, "ClusterRole")
			roles := decodeAs[rbacObject](t, manifest, "Role")
			var controllerRole *rbacObject
			for i, r := range croles {
				if r.Metadata.Name == "karmor-controller" {
					controllerRole = &croles[i]
				}
			}
			if controllerRole == nil {
				t.Fatalf("no ClusterRole karmor-controller among %d", len(croles))
			}
			if got := grants(t, *controllerRole); !slices.Equal(got, contractRules) {
				t.Errorf("ClusterRole karmor-controller grants\n  %s\nthe contract says\n  %s", strings.Join(got, "\n  "), strings.Join(contractRules, "\n  "))
			}
			if len(roles) != 1 {
				t.Fatalf("%d Roles, want the leader election's one", len(roles))
			}
			if got := grants(t, roles[0]); !slices.Equal(got, contractLeaseRules) || roles[0].Metadata.Namespace != "karmor" {
				t.Errorf("Role %s/%s grants %v, want %v in karmor", roles[0].Metadata.Namespace, roles[0].Metadata.Name, got, contractLeaseRules)
			}
			bound := map[string]bool{}
			for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
				for _, b := range decodeAs[rbacObject](t, manifest, kind) {
					if b.RoleRef.Name != controllerRole.Metadata.Name && b.RoleRef.Name != roles[0].Metadata.Name {
						continue
					}
					if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != "karmor-controller" || b.Subjects[0].Namespace != "karmor" {
						t.Errorf("%s %s binds %+v, want the ServiceAccount karmor/karmor-controller only", kind, b.Metadata.Name, b.Subjects)
					}
					if kind == "RoleBinding" && b.Metadata.Namespace != "karmor" {
						t.Errorf("RoleBinding %s in %q, want karmor", b.Metadata.Name, b.Metadata.Namespace)
					}
					bound[b.RoleRef.Kind] = true
				}
			}
			if !bound["ClusterRole"] || !bound["Role"] {
				t.Errorf("bindings found for %v, want the ClusterRole and the Role", bound)
			}
		})
	}
	// The controller's own tests run it as a user bound to internal/controller/testdata/rbac.yaml:
	// those rules must be the chart's, or its RBAC test proves nothing about the chart.
	testRBAC, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "internal", "controller", "testdata", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	croles, roles := decodeAs[rbacObject](t, testRBAC, "ClusterRole"), decodeAs[rbacObject](t, testRBAC, "Role")
	if len(croles) != 1 || len(roles) != 1 {
		t.Fatalf("internal/controller/testdata/rbac.yaml: %d ClusterRoles and %d Roles, want one each", len(croles), len(roles))
	}
	if got := grants(t, croles[0]); !slices.Equal(got, contractRules) {
		t.Errorf("internal/controller/testdata/rbac.yaml's ClusterRole grants %v, the chart %v", got, contractRules)
	}
	if got := grants(t, roles[0]); !slices.Equal(got, contractLeaseRules) {
		t.Errorf("internal/controller/testdata/rbac.yaml's Role grants %v, the chart %v", got, contractLeaseRules)
	}
}

// deployment is the rendered karmor-controller Deployment, the fields the checks need.
type deployment struct {
	Metadata struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				ServiceAccountName           string `yaml:"serviceAccountName"`
				AutomountServiceAccountToken *bool  `yaml:"automountServiceAccountToken"`
				HostPID                      bool   `yaml:"hostPID"`
				HostNetwork                  bool   `yaml:"hostNetwork"`
				SecurityContext              struct {
					RunAsNonRoot   bool `yaml:"runAsNonRoot"`
					RunAsUser      *int `yaml:"runAsUser"`
					SeccompProfile struct {
						Type string `yaml:"type"`
					} `yaml:"seccompProfile"`
				} `yaml:"securityContext"`
				Containers []struct {
					Name  string   `yaml:"name"`
					Image string   `yaml:"image"`
					Args  []string `yaml:"args"`
					Env   []struct {
						Name      string `yaml:"name"`
						ValueFrom struct {
							FieldRef struct {
								FieldPath string `yaml:"fieldPath"`
							} `yaml:"fieldRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					Ports []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
					LivenessProbe  probe `yaml:"livenessProbe"`
					ReadinessProbe probe `yaml:"readinessProbe"`
					Resources      struct {
						Requests map[string]string `yaml:"requests"`
						Limits   map[string]string `yaml:"limits"`
					} `yaml:"resources"`
					SecurityContext struct {
						RunAsNonRoot             bool  `yaml:"runAsNonRoot"`
						AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
						ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
						Privileged               bool  `yaml:"privileged"`
						Capabilities             struct {
							Drop []string `yaml:"drop"`
							Add  []string `yaml:"add"`
						} `yaml:"capabilities"`
						SeccompProfile struct {
							Type string `yaml:"type"`
						} `yaml:"seccompProfile"`
					} `yaml:"securityContext"`
					VolumeMounts []struct {
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

func controllerDeployment(t *testing.T, manifest []byte) deployment {
	t.Helper()
	ds := decodeAs[deployment](t, manifest, "Deployment")
	if len(ds) != 1 || ds[0].Metadata.Name != "karmor-controller" || len(ds[0].Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one Deployment karmor-controller with one container, got %+v", ds)
	}
	return ds[0]
}

// argValue is the value after flag in args ("" when absent).
func argValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// TestControllerDeployment: the controller profile renders two replicas with leader election,
// POD_NAMESPACE from the downward API, a hardened non-root container (read-only root, no
// privilege escalation, no capability, seccomp RuntimeDefault), probes on the port its
// --health-addr serves, its metrics port, resources, the image from the values; its pods are
// selected by nothing of karmord's; values change what they say; the default renders no
// controller at all.
func TestControllerDeployment(t *testing.T) {
	d := controllerDeployment(t, render(t, "controller"))
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if d.Spec.Replicas != 2 || argValue(c.Args, "--leader-elect") != "true" {
		t.Errorf("replicas %d, --leader-elect %q: want 2 replicas with leader election", d.Spec.Replicas, argValue(c.Args, "--leader-elect"))
	}
	if d.Metadata.Namespace != "karmor" || pod.ServiceAccountName != "karmor-controller" || (pod.AutomountServiceAccountToken != nil && !*pod.AutomountServiceAccountToken) {
		t.Errorf("namespace %q, service account %q, token mounted %v", d.Metadata.Namespace, pod.ServiceAccountName, pod.AutomountServiceAccountToken)
	}
	if c.Image != "ghcr.io/karmor/karmor-controller:0.1.0" {
		t.Errorf("image %q", c.Image)
	}
	var podNS bool
	for _, e := range c.Env {
		podNS = podNS || (e.Name == "POD_NAMESPACE" && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace")
	}
	if !podNS {
		t.Errorf("POD_NAMESPACE is not the downward API's metadata.namespace: %+v", c.Env)
	}
	ps, sc := pod.SecurityContext, c.SecurityContext
	if !ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 || ps.SeccompProfile.Type != "RuntimeDefault" || pod.HostPID || pod.HostNetwork {
		t.Errorf("pod security context %+v (hostPID %v, hostNetwork %v)", ps, pod.HostPID, pod.HostNetwork)
	}
	if !sc.RunAsNonRoot || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !sc.ReadOnlyRootFilesystem || sc.Privileged ||
		!slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || len(sc.Capabilities.Add) > 0 || sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("container security context %+v", sc)
	}
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["health"] != 9091 || argValue(c.Args, "--health-addr") != "0.0.0.0:9091" ||
		ports["metrics"] != 9090 || argValue(c.Args, "--metrics-addr") != "0.0.0.0:9090" {
		t.Errorf("ports %v, args %v", ports, c.Args)
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.LivenessProbe.HTTPGet.Port != "health" ||
		c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port != "health" {
		t.Errorf("probes: liveness %+v readiness %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("resources %+v", c.Resources)
	}
	if argValue(c.Args, "--watch-namespace") != "" || argValue(c.Args, "--registry-ca-file") != "" || len(c.VolumeMounts) != 0 {
		t.Errorf("defaults pass --watch-namespace, --registry-ca-file or mounts: %v %+v", c.Args, c.VolumeMounts)
	}

	// Values reach the flags.
	d = controllerDeployment(t, render(t, "controller", "controller.watchNamespace=policies", "controller.workers=4",
		"controller.registryCA.configMap=corp-ca", "controller.replicas=1", "image.tag=v9", "controller.health.port=8081"))
	c = d.Spec.Template.Spec.Containers[0]
	if d.Spec.Replicas != 1 || c.Image != "ghcr.io/karmor/karmor-controller:v9" || argValue(c.Args, "--watch-namespace") != "policies" ||
		argValue(c.Args, "--workers") != "4" || argValue(c.Args, "--registry-ca-file") != "/etc/karmor/registry-ca/ca.crt" ||
		len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/etc/karmor/registry-ca" || argValue(c.Args, "--health-addr") != "0.0.0.0:8081" {
		t.Errorf("values not in the Deployment: replicas %d image %s args %v mounts %+v", d.Spec.Replicas, c.Image, c.Args, c.VolumeMounts)
	}

	// Beside karmord: karmord's DaemonSet selects none of the controller's pods.
	both := render(t, "containerd", "controller.enabled=true")
	d = controllerDeployment(t, both)
	ds := decodeAs[deployment](t, both, "DaemonSet")
	if len(ds) != 1 {
		t.Fatalf("%d DaemonSets beside the controller", len(ds))
	}
	if selects(ds[0].Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
		t.Errorf("karmord's selector %v selects the controller's pods %v", ds[0].Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
	}
	if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
		t.Errorf("the Deployment's selector %v misses its pods %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
	}

	// Off by default: the existing profiles render nothing of the controller's.
	for _, profile := range karmordProfiles {
		if ks := kinds(decodeObjects(t, render(t, profile))); slices.Contains(ks, "Deployment") || slices.Contains(ks, "Role") {
			t.Errorf("%s renders controller objects: %v", profile, ks)
		}
	}
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestControllerArgsAreTheProgram: every flag the chart gives karmor-controller is one it
// accepts (it parses its flags before --help).
func TestControllerArgsAreTheProgram(t *testing.T) {
	bin := testutil.Binary(t, "karmor-controller")
	for _, set := range [][]string{nil, {"controller.watchNamespace=policies", "controller.registryCA.configMap=ca"}} {
		c := controllerDeployment(t, render(t, "controller", set...)).Spec.Template.Spec.Containers[0]
		if out, err := exec.Command(bin, append(slices.Clone(c.Args), "--help")...).CombinedOutput(); err != nil {
			t.Errorf("karmor-controller refuses the chart's flags %v: %v\n%s", c.Args, err, out)
		}
	}
	if out, err := exec.Command(bin, "--no-such-flag", "--help").CombinedOutput(); err == nil {
		t.Errorf("karmor-controller accepted an unknown flag, so this check cannot fail:\n%s", out)
	}
}
