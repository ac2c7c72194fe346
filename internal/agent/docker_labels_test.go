package agent

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/karmor/karmor/internal/containerinfo"
	"github.com/karmor/karmor/internal/dockerlabels"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// TestDockerContainerFillsNameAndLabels: the DockerContainer hook gives a Docker container its
// name, image and labels, so that policies select it by those labels; it is asked only about
// containers with a Docker-shaped ID, no pod, not Podman's, and without name or labels.
func TestDockerContainerFillsNameAndLabels(t *testing.T) {
	cfg, _ := policyConfig(t, "web.yaml", testutil.BlockShellPolicy("web-block", "", "web"))
	web := strings.Repeat("a", 64)
	var asked atomic.Int32
	cfg.DockerContainer = func(id string) (dockerlabels.Container, bool) {
		asked.Add(1)
		if id == web {
			return dockerlabels.Container{Name: "web", Image: "busybox:karmor", Labels: map[string]string{"app": "web"}}, true
		}
		return dockerlabels.Container{}, false
	}
	runAgent(t, cfg)
	cl := client(cfg)
	unknown := strings.Repeat("b", 64)
	podID := strings.Repeat("c", 64)
	podmanID := strings.Repeat("d", 64)
	reportStarts(t, cl, []agentapi.Container{
		{ID: web, PID: 1}, // filled
		{ID: unknown, PID: 2},
		{ID: podID, PID: 3, Pod: "shop-0", Namespace: "shop"},
		{ID: podmanID, PID: 4, Annotations: map[string]string{containerinfo.AnnotationManager: containerinfo.ManagerLibpod}},
		{ID: "not-docker", PID: 5},
	})
	checkLabelsAndPolicies(t, cl, map[string]string{
		web:     "map[app:web] [KubeArmorPolicy/default/web-block]",
		unknown: "map[] []",
	})
	if n := asked.Load(); n != 2 {
		t.Errorf("DockerContainer asked %d times for one list, want 2 (web and unknown)", n)
	}
	c, err := cl.Get(ctxT(t), web)
	if err != nil || c.Name != "web" || c.Image != "busybox:karmor" || fmt.Sprint(c.Policies) != "[KubeArmorPolicy/default/web-block]" {
		t.Errorf("get: %+v, %v", c, err)
	}
}
