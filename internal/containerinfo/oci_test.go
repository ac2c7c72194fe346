package containerinfo

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

func TestFromOCICRIO(t *testing.T) {
	state := &rspec.State{ID: "c1", Pid: 7, Bundle: "/run/b", Annotations: map[string]string{
		"io.container.manager":            "cri-o",
		"io.kubernetes.cri-o.ContainerID": "c1",
		"io.kubernetes.pod.name":          "web-0",
		"io.kubernetes.pod.namespace":     "shop",
		"io.kubernetes.pod.uid":           "uid-1",
		"io.kubernetes.container.name":    "nginx",
		"io.kubernetes.cri-o.Labels":      `{"app":"web","io.kubernetes.pod.name":"web-0"}`,
		"io.kubernetes.cri-o.ImageName":   "docker.io/library/nginx:1.27",
		"io.kubernetes.cri-o.Created":     "2025-01-02T03:04:05.123456789Z",
		"unrelated.example.com/whatever":  "x",
	}}
	spec := &rspec.Spec{
		Process: &rspec.Process{ApparmorProfile: "crio-default"},
		Linux:   &rspec.Linux{CgroupsPath: "kubepods-besteffort.slice:crio:c1"},
	}
	c := FromOCI(state, spec)
	want := map[string][2]string{
		"ID":            {c.ID, "c1"},
		"Bundle":        {c.Bundle, "/run/b"},
		"Pod":           {c.Pod, "web-0"},
		"Namespace":     {c.Namespace, "shop"},
		"PodUID":        {c.PodUID, "uid-1"},
		"ContainerName": {c.ContainerName, "nginx"},
		"Name":          {c.Name, "nginx"},
		"Image":         {c.Image, "docker.io/library/nginx:1.27"},
		"AppArmor":      {c.AppArmor, "crio-default"},
		"CgroupPath":    {c.CgroupPath, "kubepods-besteffort.slice:crio:c1"},
		"label app":     {c.Labels["app"], "web"},
		"annotation":    {c.Annotations["unrelated.example.com/whatever"], "x"},
	}
	for field, got := range want {
		if got[0] != got[1] {
			t.Errorf("%s = %q, want %q", field, got[0], got[1])
		}
	}
	if c.PID != 7 {
		t.Errorf("PID = %d, want 7", c.PID)
	}
	if !c.Created.Equal(time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)) {
		t.Errorf("Created = %v", c.Created)
	}
	if len(c.Annotations) != len(state.Annotations) {
		t.Errorf("kept %d annotations, want all %d", len(c.Annotations), len(state.Annotations))
	}
}

func TestFromOCIContainerdAndPodLabels(t *testing.T) {
	// containerd puts its annotations in config.json; karmor's NRI plugin adds the pod's.
	spec := &rspec.Spec{Annotations: map[string]string{
		"io.kubernetes.cri.container-type":    "container",
		"io.kubernetes.cri.sandbox-name":      "api-7d9",
		"io.kubernetes.cri.sandbox-namespace": "prod",
		"io.kubernetes.cri.sandbox-uid":       "u-2",
		"io.kubernetes.cri.container-name":    "api",
		"io.kubernetes.cri.image-name":        "registry.example/api:v2",
		"karmor.io/container-id":              "c2",
		"karmor.io/pod-labels":                `{"app":"api","tier":"backend"}`,
		"karmor.io/pod-name":                  "api-7d9",
		"karmor.io/pod-namespace":             "prod",
		"karmor.io/pod-uid":                   "u-2",
	}}
	bundle := "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c2"
	c := FromOCI(&rspec.State{ID: "c2", Pid: 9, Bundle: bundle}, spec)
	if c.Pod != "api-7d9" || c.Namespace != "prod" || c.PodUID != "u-2" || c.ContainerName != "api" ||
		c.Name != "api" || c.Image != "registry.example/api:v2" {
		t.Fatalf("identity %+v", c)
	}
	if c.Labels["app"] != "api" || c.Labels["tier"] != "backend" || len(c.Labels) != 2 {
		t.Fatalf("labels %v", c.Labels)
	}
	// The state's annotations overlay the config's.
	c = FromOCI(&rspec.State{ID: "c2", Bundle: bundle, Annotations: map[string]string{"karmor.io/pod-name": "other"}}, spec)
	if c.Pod != "other" {
		t.Errorf("state annotation did not win: pod %q", c.Pod)
	}
}

func TestFromOCINameAndBadLabels(t *testing.T) {
	// Outside Kubernetes the name is KubeArmor's annotation; Kubernetes' keys mean nothing.
	c := FromOCI(&rspec.State{ID: "c3", Annotations: map[string]string{
		"kubearmor.io/container.name":  "explicit",
		"io.kubernetes.container.name": "k8s-name",
	}}, nil)
	if c.Name != "explicit" || c.ContainerName != "" {
		t.Errorf("name %q container name %q", c.Name, c.ContainerName)
	}
	crio := func(id string, extra map[string]string) map[string]string {
		m := map[string]string{"io.container.manager": "cri-o", "io.kubernetes.cri-o.ContainerID": id,
			"io.kubernetes.container.name": "k8s-name", "kubearmor.io/container.name": "explicit"}
		maps.Copy(m, extra)
		return m
	}
	c = FromOCI(&rspec.State{ID: "c4", Annotations: crio("c4", map[string]string{
		"io.kubernetes.cri-o.Labels":  `["a","b"]`,  // wrong shape: ignored
		"io.kubernetes.cri-o.Created": "not a time", // ignored
	})}, nil)
	// In a pod the runtime names the container; a pod's annotation does not.
	if c.Name != "k8s-name" || c.ContainerName != "k8s-name" {
		t.Errorf("name %q container name %q", c.Name, c.ContainerName)
	}
	if c.Labels != nil || !c.Created.IsZero() {
		t.Errorf("malformed labels or time were used: %v %v", c.Labels, c.Created)
	}
	// Under CRI-O a pod's own annotations reach the spec, so karmor.io/pod-labels without
	// karmor-nri's proof (its container id) is the pod's word: CRI-O's labels win, nothing merged.
	c = FromOCI(&rspec.State{ID: "c4", Annotations: crio("c4", map[string]string{
		"io.kubernetes.cri-o.Labels": `{"app":"web","x":"1"}`,
		"karmor.io/pod-labels":       `{"app":"trusted","extra":"y"}`,
		"karmor.io/container-id":     "c3",
	})}, nil)
	if c.Labels["app"] != "web" || c.Labels["x"] != "1" || len(c.Labels) != 2 {
		t.Errorf("labels %v, want CRI-O's alone", c.Labels)
	}
	// A malformed CRI-O label annotation does not let the pod's annotation stand in for it.
	c = FromOCI(&rspec.State{ID: "c5", Annotations: crio("c5", map[string]string{
		"io.kubernetes.cri-o.Labels": `{"app":`,
		"karmor.io/pod-labels":       `{"app":"trusted"}`,
	})}, nil)
	if c.Labels != nil {
		t.Errorf("labels %v, want none", c.Labels)
	}
}

func TestFromOCIBounds(t *testing.T) {
	ann := map[string]string{
		"io.container.manager":             "cri-o",
		"io.kubernetes.cri-o.ContainerID":  "c5",
		"io.kubernetes.pod.name":           "p",
		strings.Repeat("k", MaxKeyBytes+1): "long key",
		"big":                              strings.Repeat("v", MaxValueBytes+1),
	}
	for i := range 2 * MaxAnnotations {
		ann[fmt.Sprintf("a%04d", i)] = "v"
	}
	labels := map[string]string{"long": strings.Repeat("l", MaxLabelValueBytes+1)}
	for i := range 2 * MaxLabels {
		labels[fmt.Sprintf("l%04d", i)] = "v"
	}
	ann["io.kubernetes.cri-o.Labels"] = mustJSON(t, labels)
	c := FromOCI(&rspec.State{ID: "c5", Annotations: ann}, nil)
	if len(c.Annotations) != MaxAnnotations {
		t.Errorf("kept %d annotations, want %d", len(c.Annotations), MaxAnnotations)
	}
	if _, ok := c.Annotations["big"]; ok {
		t.Error("oversized value kept")
	}
	if _, ok := c.Annotations[strings.Repeat("k", MaxKeyBytes+1)]; ok {
		t.Error("oversized key kept")
	}
	if c.Annotations["a0000"] != "v" {
		t.Error("first annotation in key order dropped")
	}
	// Identity survives even when its annotation falls outside the bounded copy.
	if c.Pod != "p" {
		t.Errorf("pod %q, want p", c.Pod)
	}
	if len(c.Labels) != MaxLabels || c.Labels["long"] != "" {
		t.Errorf("kept %d labels (long=%d bytes), want %d and no oversized value", len(c.Labels), len(c.Labels["long"]), MaxLabels)
	}

	// The total byte budget holds when each value is within its own bound.
	many := map[string]string{}
	for i := range MaxAnnotations {
		many[fmt.Sprintf("b%04d", i)] = strings.Repeat("x", MaxValueBytes-10)
	}
	c = FromOCI(&rspec.State{ID: "c6", Annotations: many}, nil)
	total := 0
	for k, v := range c.Annotations {
		total += len(k) + len(v)
	}
	if total > MaxAnnotationBytes || len(c.Annotations) == 0 {
		t.Errorf("kept %d annotations of %d bytes, budget %d", len(c.Annotations), total, MaxAnnotationBytes)
	}
}

func TestFullCapabilities(t *testing.T) {
	all := capNames[:]
	caps := func(b, e []string) *rspec.LinuxCapabilities {
		return &rspec.LinuxCapabilities{Bounding: b, Effective: e}
	}
	last := len(capNames) - 1
	if !FullCapabilities(caps(all, all), last) {
		t.Error("every capability: not privileged")
	}
	// runc spec's default set.
	def := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	if FullCapabilities(caps(def, def), last) {
		t.Error("runc default caps: privileged")
	}
	if FullCapabilities(caps(all, all[:len(all)-1]), last) {
		t.Error("effective set missing one: privileged")
	}
	if FullCapabilities(nil, last) {
		t.Error("no capabilities section: privileged")
	}
	// An older kernel knows fewer capabilities; a runtime's --privileged lists only those.
	if !FullCapabilities(caps(all[:38], all[:38]), 37) {
		t.Error("all of an older kernel's capabilities: not privileged")
	}
	// A newer kernel: the runtime lists names this program does not know.
	newer := append(append([]string{}, all...), "CAP_FUTURE_ONE")
	if !FullCapabilities(caps(newer, newer), last+1) {
		t.Error("all capabilities of a newer kernel: not privileged")
	}
	if FullCapabilities(caps(all, all), last+1) {
		t.Error("missing a newer kernel's capability: privileged")
	}
	// Names without the CAP_ prefix and in lower case are what some tools write.
	lower := make([]string, len(all))
	for i, n := range all {
		lower[i] = strings.ToLower(strings.TrimPrefix(n, "CAP_"))
	}
	if !FullCapabilities(caps(lower, lower), last) {
		t.Error("lower-case names: not privileged")
	}
	spec := &rspec.Spec{Process: &rspec.Process{Capabilities: caps(all, all)}}
	if c := FromOCI(&rspec.State{ID: "p"}, spec); c.Privileged != (HostCapLastCap() <= last) {
		t.Errorf("FromOCI privileged=%v with host cap_last_cap %d", c.Privileged, HostCapLastCap())
	}
}
