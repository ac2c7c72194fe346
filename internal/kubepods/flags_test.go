package kubepods

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/karmor/karmor/internal/testutil"
)

// Start against the real API server, as karmord runs it: from a kubeconfig, with the core/v1 client
// speaking protobuf, watching only this node's pods.
func TestFlagsStartAgainstTheAPIServer(t *testing.T) {
	c := newCluster(t)
	c.createPod("web-1", c.thisNode, map[string]string{"app": "web"})
	c.createPod("db-1", c.otherNode, map[string]string{"app": "db"})
	var logs testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := Flags{Enabled: true, Kubeconfig: kube.WriteKubeconfig(t, "admin"), NodeName: c.thisNode, SyncWait: deadline}
	lookup, err := f.Start(ctx, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "pod labels from the Kubernetes API are ready") {
		t.Fatalf("Start returned before the first list arrived; log:\n%s", logs.String())
	}
	// Start waited for the first list, so the answer is there at once.
	if labels, ok := lookup(c.ns, "web-1"); !ok || labels["app"] != "web" {
		t.Errorf("lookup(web-1) = %v, %v; want app=web, true", labels, ok)
	}
	if labels, ok := lookup(c.ns, "db-1"); ok {
		t.Errorf("lookup(db-1) on %s = %v, true; want false", c.otherNode, labels)
	}

	c.patchLabels("web-1", map[string]any{"v": "2"})
	eventually(t, "the label change did not arrive", func() bool {
		labels, _ := lookup(c.ns, "web-1")
		return labels["v"] == "2" && labels["app"] == "web"
	})
	c.deleteNow("web-1")
	eventually(t, "the deletion did not arrive", func() bool {
		_, ok := lookup(c.ns, "web-1")
		return !ok
	})
}

// A token the API server refuses (a user without RBAC bindings: 403) must not hold karmord up: Start
// returns after SyncWait, says the list is missing, and client-go's complaint reaches the log.
func TestFlagsStartGoesOnWhenTheAPIRefuses(t *testing.T) {
	c := newCluster(t)
	c.createPod("web-1", c.thisNode, map[string]string{"app": "web"})
	var logs testutil.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A short wait keeps the test quick; what is checked is that Start returns and says why.
	f := Flags{Enabled: true, Kubeconfig: kube.WriteKubeconfig(t, nobody), NodeName: c.thisNode, SyncWait: 200 * time.Millisecond}
	lookup, err := f.Start(ctx, logger)
	if err != nil {
		t.Fatal(err)
	}
	if labels, ok := lookup(c.ns, "web-1"); ok {
		t.Errorf("lookup answered %v without the API", labels)
	}
	if out := logs.String(); !strings.Contains(out, "has not arrived") {
		t.Errorf("no warning that the first list is missing; log:\n%s", out)
	}
	eventually(t, "the API's refusal is not in karmord's log", func() bool {
		out := logs.String()
		return strings.Contains(out, "forbidden") && strings.Contains(out, nobody)
	})
}

func TestFlagsOffStartsNothing(t *testing.T) {
	f := Flags{Kubeconfig: "/nonexistent/kubeconfig"}
	lookup, err := f.Start(context.Background(), nil)
	if err != nil || lookup != nil {
		t.Errorf("Start with the feature off = %v, %v; want nil, nil", lookup != nil, err)
	}
}

func TestFlagsBadKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte("clusters: [not, a, kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kubeconfig := range []string{path, filepath.Join(t.TempDir(), "missing")} {
		f := Flags{Enabled: true, Kubeconfig: kubeconfig, NodeName: "node-a"}
		lookup, err := f.Start(context.Background(), nil)
		if err == nil || lookup != nil || !strings.Contains(err.Error(), "--kubeconfig "+kubeconfig) {
			t.Errorf("Start with kubeconfig %s: err %v; want an error naming --kubeconfig and the file", kubeconfig, err)
		}
	}
}

func TestFlagsNoClusterFound(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
	t.Setenv("HOME", t.TempDir())
	f := Flags{Enabled: true, NodeName: "node-a"}
	if _, err := f.Start(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "pass --kubeconfig") {
		t.Errorf("Start outside a cluster without kubeconfig: err %v; want advice to pass --kubeconfig", err)
	}
}

func TestFlagsNodeNameDefaults(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	host, err := os.Hostname()
	if err != nil {
		t.Fatalf("os.Hostname: %v", err)
	}
	if got, err := (&Flags{}).nodeName(); err != nil || got != strings.ToLower(host) {
		t.Errorf("node name without flag or $NODE_NAME = %q, %v; want the host name %q in lower case", got, err, host)
	}
	t.Setenv("NODE_NAME", "worker-7")
	if got, _ := (&Flags{}).nodeName(); got != "worker-7" {
		t.Errorf("node name from $NODE_NAME = %q; want worker-7", got)
	}
	if got, _ := (&Flags{NodeName: "worker-9"}).nodeName(); got != "worker-9" {
		t.Errorf("node name from the flag = %q; want worker-9", got)
	}
}

func TestFlagsRegister(t *testing.T) {
	var f Flags
	fs := pflag.NewFlagSet("karmord", pflag.ContinueOnError)
	f.Register(fs)
	if f.Enabled {
		t.Error("--kube-pod-labels is on by default")
	}
	if err := fs.Parse([]string{"--kube-pod-labels", "--kubeconfig", "/etc/k.conf"}); err != nil {
		t.Fatal(err)
	}
	if !f.Enabled || f.Kubeconfig != "/etc/k.conf" {
		t.Errorf("parsed flags = %+v", f)
	}
}
