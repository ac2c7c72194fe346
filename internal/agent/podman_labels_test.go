package agent

import (
	"sync/atomic"
	"testing"

	"github.com/karmor/karmor/internal/containerinfo"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// TestContainerLabelsFillPodmanContainers: the ContainerLabels hook gives labels to Podman
// containers that came without any, so that policies select them by those labels; it is not
// asked about containers with labels or of other runtimes.
func TestContainerLabelsFillPodmanContainers(t *testing.T) {
	cfg, _ := policyConfig(t, "web.yaml", testutil.BlockShellPolicy("web-block", "", "web"))
	var calls atomic.Int32
	cfg.ContainerLabels = func(c *agentapi.Container) (map[string]string, bool) {
		calls.Add(1)
		if c.ID == "p1" {
			return map[string]string{"app": "web"}, true
		}
		return nil, false
	}
	runAgent(t, cfg)
	cl := client(cfg)
	ctx := ctxT(t)
	libpod := map[string]string{containerinfo.AnnotationManager: containerinfo.ManagerLibpod}
	reportStarts(t, cl, []agentapi.Container{
		{ID: "p1", PID: 1, Annotations: libpod},                                                      // filled
		{ID: "p2", PID: 2, Annotations: libpod},                                                      // not in Podman's database
		{ID: "p3", PID: 3, Annotations: libpod, Labels: map[string]string{"app": "other"}},           // has labels
		{ID: "r1", PID: 4, Annotations: map[string]string{containerinfo.AnnotationManager: "cri-o"}}, // not Podman
	})
	checkLabelsAndPolicies(t, cl, map[string]string{
		"p1": "map[app:web] [KubeArmorPolicy/default/web-block]",
		"p2": "map[] []",
		"p3": "map[app:other] []",
		"r1": "map[] []",
	})
	if n := calls.Load(); n != 2 {
		t.Errorf("ContainerLabels called %d times for one list, want 2 (p1, p2)", n)
	}
	// A single container's answer and its explanation see the labels too.
	if c, err := cl.Get(ctx, "p1"); err != nil || c.Labels["app"] != "web" || len(c.Policies) != 1 {
		t.Errorf("get p1: %+v, %v", c, err)
	}
	if e, err := cl.Explain(ctx, "p1"); err != nil || e.Container == nil || e.Container.Labels["app"] != "web" || len(e.Verdicts) != 1 || !e.Verdicts[0].Applies {
		t.Errorf("explain p1: %+v, %v", e, err)
	}
}
