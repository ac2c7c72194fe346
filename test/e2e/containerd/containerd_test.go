package containerd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/nri"
	"github.com/karmor/karmor/internal/runcwrap"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// TestContainerd runs one containerd v2.4.2 for all its steps (restarting it between them) and a
// real karmord that learns containers only from karmor-hook.
func TestContainerd(t *testing.T) {
	testutil.RequireContainerd(t)
	k := startKarmord(t)
	hook := k.hookConfig(t)
	// containerd passes pod annotations under karmor.io/ and CRI-O's keys into the containers'
	// specs, so that a pod can try to name its own namespace and labels: containerd's and the
	// plugin's values must win (docs/identity.md).
	c := testutil.StartContainerd(t, testutil.ContainerdOptions{PodAnnotations: []string{"karmor.io/*", "io.kubernetes.pod.*", "io.kubernetes.cri-o.*"}})
	spoof := map[string]string{nri.AnnotationPodLabels: `{"app":"spoofed"}`, nri.AnnotationPodName: "spoofed",
		"io.kubernetes.pod.namespace": "kube-system", "io.kubernetes.cri-o.Labels": `{"app":"spoofed"}`}
	plugin := startNRIPlugin(t, c.NRISocket, hook)
	plugin.waitConfigured(t, 1)
	parent := t

	t.Run("pod labels through NRI", func(t *testing.T) {
		spec := testutil.PodSpec{Name: "web-1", Namespace: "shop", UID: "uid-web-1",
			Labels: map[string]string{"app": "web", "tier": "front"}, Annotations: spoof}
		pod := c.StartPod(t, spec)
		start := k.waitEvent(t, agentapi.KindStart, pod.ContainerID)
		got := start.Container
		if got.Pod != "web-1" || got.Namespace != "shop" || got.PodUID != "uid-web-1" || got.ContainerName != "main" || got.PID <= 0 {
			t.Fatalf("start event identity: %+v", got)
		}
		if got.Labels["app"] != "web" || got.Labels["tier"] != "front" {
			t.Fatalf("labels from the NRI annotation: %v", got.Labels)
		}
		// Labels are kept as the pod has them: containerd adds its own key to every pod's labels.
		if got.Labels["io.cri-containerd.kind"] != "sandbox" {
			t.Fatalf("containerd's own pod label is missing or changed: %v", got.Labels)
		}
		listed, err := k.Client.Get(t.Context(), pod.ContainerID)
		if err != nil || listed.Labels["app"] != "web" {
			t.Fatalf("karmor's table: %+v %v", listed, err)
		}
		ann, hooks := runtimeSpec(t, c, pod.ContainerID)
		var specLabels map[string]string
		if err := json.Unmarshal([]byte(ann[nri.AnnotationPodLabels]), &specLabels); err != nil || specLabels["app"] != "web" || specLabels["tier"] != "front" ||
			ann[nri.AnnotationPodName] != "web-1" || ann[nri.AnnotationPodNamespace] != "shop" || ann[nri.AnnotationPodUID] != "uid-web-1" {
			t.Fatalf("pod annotations in the OCI spec: %v", ann)
		}
		if ann[nri.AnnotationContainerID] != pod.ContainerID || ann["io.kubernetes.pod.namespace"] != "" || ann["io.kubernetes.cri-o.Labels"] != "" {
			t.Fatalf("the plugin did not name the container or left CRI-O's keys the pod passed: %v", ann)
		}
		if n := countOf(hooks, hook.Path); n != 1 {
			t.Fatalf("karmor-hook appears %d times at createRuntime: %v", n, hooks)
		}
		// The sandbox is not a CreateContainer in NRI: karmor-hook reports the workload only.
		if k.hasEvent(pod.ID) {
			t.Fatalf("the pod sandbox %s was reported through NRI", pod.ID)
		}
		c.Crictl(t, "stop", pod.ContainerID)
		stop := k.waitEvent(t, agentapi.KindStop, pod.ContainerID)
		if stop.Stage != "poststop" {
			t.Fatalf("stop event stage %q", stop.Stage)
		}
		c.Crictl(t, "rm", pod.ContainerID)
		c.RemovePod(t, pod.ID)
		if _, err := k.Client.Get(t.Context(), pod.ContainerID); err == nil {
			t.Fatal("a stopped container is still listed")
		}
	})

	t.Run("plugin killed: pods still start, and are seen again once it is back", func(t *testing.T) {
		plugin.kill()
		pod := c.StartPod(t, testutil.PodSpec{Name: "web-2", Labels: map[string]string{"app": "web"}, Annotations: spoof})
		ann, hooks := runtimeSpec(t, c, pod.ContainerID)
		if slices.Contains(hooks, hook.Path) {
			t.Fatalf("a container created without the plugin runs karmor-hook: %v", hooks)
		}
		// Without the plugin, what the pod claims is what the spec says: the check above (the
		// plugin overriding it) is not vacuous.
		if ann[nri.AnnotationPodLabels] != spoof[nri.AnnotationPodLabels] || ann["io.kubernetes.pod.namespace"] != "kube-system" {
			t.Fatalf("containerd did not pass the pod's annotation through: %v", ann)
		}
		c.RemovePod(t, pod.ID)

		plugin = startNRIPlugin(parent, c.NRISocket, hook) // lives on into the next steps
		plugin.waitConfigured(t, 1)
		pod = c.StartPod(t, testutil.PodSpec{Name: "web-3", Labels: map[string]string{"app": "web"}})
		if ev := k.waitEvent(t, agentapi.KindStart, pod.ContainerID); ev.Container.Labels["app"] != "web" {
			t.Fatalf("after the plugin came back: %+v", ev.Container)
		}
		c.RemovePod(t, pod.ID)
	})

	t.Run("containerd restarts: the plugin reconnects by itself", func(t *testing.T) {
		c.Restart(t, c.Options())
		plugin.waitConfigured(t, 2)
		pod := c.StartPod(t, testutil.PodSpec{Name: "web-4", Labels: map[string]string{"app": "web"}})
		if ev := k.waitEvent(t, agentapi.KindStart, pod.ContainerID); ev.Container.Pod != "web-4" {
			t.Fatalf("after the restart: %+v", ev.Container)
		}
		c.RemovePod(t, pod.ID)
	})

	t.Run("NRI disabled, karmor-runc as runc", func(t *testing.T) {
		plugin.kill()
		cfgPath := filepath.Join(c.Dir, "karmor-runc.json")
		cfg, err := json.Marshal(runcwrap.ConfigFromHook(hook, testutil.RequireCommand(t, "runc", "apt-get install runc")))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		c.Restart(t, testutil.ContainerdOptions{DisableNRI: true, RuncBinary: testutil.Binary(t, "karmor-runc"),
			Env: []string{runcwrap.EnvConfig + "=" + cfgPath}, PodAnnotations: c.Options().PodAnnotations})
		if _, err := os.Stat(c.NRISocket); err == nil {
			t.Fatal("NRI socket present with NRI disabled")
		}
		pod := c.StartPod(t, testutil.PodSpec{Name: "web-5", Namespace: "shop", Labels: map[string]string{"app": "web"}, Annotations: spoof})
		ev := k.waitEvent(t, agentapi.KindStart, pod.ContainerID)
		// containerd's CRI annotations name the pod; its labels need NRI, so there are none: the
		// karmor.io and CRI-O keys the pod passed through are not believed.
		if ev.Container.Pod != "web-5" || ev.Container.Namespace != "shop" || ev.Container.ContainerName != "main" || len(ev.Container.Labels) != 0 {
			t.Fatalf("start through karmor-runc: %+v", ev.Container)
		}
		if ann, _ := runtimeSpec(t, c, pod.ContainerID); ann[nri.AnnotationContainerID] != "" || ann["io.kubernetes.pod.namespace"] != "kube-system" {
			t.Fatalf("NRI is off, yet the container carries the plugin's annotations, or containerd did not pass the pod's: %v", ann)
		}
		// Without NRI the wrapper sees every runc create, the sandbox's too.
		k.waitEvent(t, agentapi.KindStart, pod.ID)
		c.Crictl(t, "stop", pod.ContainerID)
		k.waitEvent(t, agentapi.KindStop, pod.ContainerID)
		c.RemovePod(t, pod.ID)
	})

	t.Run("pre-registered: containerd starts karmor-nri itself", func(t *testing.T) {
		dir := t.TempDir()
		pluginDir, confDir := filepath.Join(dir, "plugins"), filepath.Join(dir, "conf.d")
		res, err := nri.Install(nri.InstallOptions{Hook: hook, HookBinary: hook.Path, NRIBinary: testutil.Binary(t, "karmor-nri"),
			Start: nri.StartPreregistered, PluginDir: pluginDir, PluginConfigDir: confDir})
		if err != nil {
			t.Fatal(err)
		}
		// The plugin gets no command line and its output is discarded: its log goes where its
		// configuration says.
		conf := filepath.Join(confDir, "10-karmor.conf")
		logPath := filepath.Join(dir, "karmor-nri.log")
		body, err := nri.FormatConfig(nri.Config{Hook: hook, PluginLogFile: logPath})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(conf, body, 0o644); err != nil {
			t.Fatal(err)
		}
		c.Restart(t, testutil.ContainerdOptions{NRIPluginDir: pluginDir, NRIPluginConfigDir: confDir})
		pod := c.StartPod(t, testutil.PodSpec{Name: "web-6", Labels: map[string]string{"app": "web"}})
		if ev := k.waitEvent(t, agentapi.KindStart, pod.ContainerID); ev.Container.Labels["app"] != "web" {
			t.Fatalf("through the pre-registered plugin: %+v", ev.Container)
		}
		b, _ := os.ReadFile(logPath)
		// "(10-karmor)" is the executable's name: the copy containerd started from its plugin dir.
		if !strings.Contains(string(b), "karmor-nri configured by the runtime") || !strings.Contains(string(b), "(10-karmor)") {
			t.Fatalf("the plugin's log (%v) does not show it at work:\n%s", res.Written, b)
		}
		c.RemovePod(t, pod.ID)
	})
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
