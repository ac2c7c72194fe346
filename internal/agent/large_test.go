package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// bigAnnotations is a pod's worth of annotations as the hook accepts them: 15 values of 16 KiB
// (the hook's per-value bound), about 240 KiB in all, plus one small annotation.
func bigAnnotations(tag string) map[string]string {
	m := map[string]string{"io.container.manager": "libpod"}
	for i := range 15 {
		m[fmt.Sprintf("example.com/blob-%02d", i)] = strings.Repeat(tag[:1], 16<<10)
	}
	return m
}

// realisticContainer is a container as karmor-hook describes a Kubernetes one: a 64-digit id,
// the six namespaces, cgroup path, bundle, image, labels and a few small annotations. Its JSON
// is about 1 KiB, so ten thousand of them are more than one frame holds.
func realisticContainer(i int) agentapi.Container {
	id := fmt.Sprintf("%064x", i+1)
	return agentapi.Container{
		ID: id, Name: fmt.Sprintf("web-%d", i), PID: 10000 + i, PIDStart: uint64(900000 + i),
		Namespaces: map[string]uint64{"pid": 4026532000, "mnt": 4026532001, "net": 4026532002, "uts": 4026532003, "ipc": 4026532004, "cgroup": 4026532005},
		CgroupPath: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + id[:32] + ".slice/cri-containerd-" + id + ".scope",
		Bundle:     "/run/containerd/io.containerd.runtime.v2.task/k8s.io/" + id,
		Image:      "registry.example.com/shop/web:1.27.3", Pod: fmt.Sprintf("web-%d", i), Namespace: "shop", ContainerName: "web",
		PodUID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i),
		Labels: map[string]string{"app": "web", "tier": "front", "pod-template-hash": "7d9f8c6b5"},
		Annotations: map[string]string{
			"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": id,
			"io.kubernetes.cri.sandbox-namespace": "shop", "io.kubernetes.cri.image-name": "registry.example.com/shop/web:1.27.3",
		},
	}
}

// TestListTenThousandContainers: a list answers however many containers are live (issue 12
// item 2); one frame of the protocol holds about four thousand of these.
func TestListTenThousandContainers(t *testing.T) {
	const n = 10000
	cfg, _ := testConfig(t)
	a := runAgent(t, cfg)
	for i := range n {
		a.apply(agentapi.Event{Kind: agentapi.KindStart, Stage: "createRuntime", Source: agentapi.SourceHook, Time: time.Now(), Container: realisticContainer(i)})
	}
	list, err := client(cfg).List(ctxT(t))
	if err != nil {
		t.Fatalf("list of %d containers: %v", n, err)
	}
	if len(list) != n {
		t.Fatalf("listed %d containers, want %d", len(list), n)
	}
	for i, c := range list {
		if want := realisticContainer(i); c.ID != want.ID || c.CgroupPath != want.CgroupPath || c.Labels["app"] != "web" || c.Namespaces["net"] != 4026532002 {
			t.Fatalf("container %d listed as %+v", i, c)
		}
	}
}

// churn starts and stops n containers through the socket, as their hooks would, each described
// by describe, and returns the last acknowledged sequence number.
func churn(t *testing.T, cl *agentapi.Client, n int, describe func(i int) agentapi.Container) uint64 {
	t.Helper()
	var seq uint64
	for i := range n {
		c := describe(i)
		start := &agentapi.Event{Kind: agentapi.KindStart, Stage: "createRuntime", Time: time.Now(), Container: c}
		if _, err := cl.Report(ctxT(t), start); err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		stop := &agentapi.Event{Kind: agentapi.KindStop, Stage: "poststop", Time: time.Now(), Container: agentapi.Container{ID: c.ID, PID: c.PID}}
		s, err := cl.Report(ctxT(t), stop)
		if err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
		seq = s
	}
	return seq
}

// retained watches from 0 until the event numbered head and returns what the agent retains: the
// backlog's envelopes and their size in JSON.
func retained(t *testing.T, cfg Config, head uint64) ([]*agentapi.Envelope, int) {
	t.Helper()
	var envs []*agentapi.Envelope
	total := 0
	errDone := errors.New("backlog read")
	err := client(cfg).Watch(ctxT(t), 0, func(env *agentapi.Envelope) error {
		b, err := json.Marshal(env)
		if err != nil {
			return err
		}
		total += len(b)
		envs = append(envs, env)
		if env.Seq >= head {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("watch from 0: %v", err)
	}
	return envs, total
}

// TestEventRingKeepsSlimEvents: churning containers with ~240 KiB of annotations each leaves
// karmord's event ring holding a few KiB per event, not every stopped container's annotations
// (issue 12 item 3); the ring still answers the recent events in order.
func TestEventRingKeepsSlimEvents(t *testing.T) {
	const n = 100
	cfg, _ := testConfig(t)
	runAgent(t, cfg)
	head := churn(t, client(cfg), n, func(i int) agentapi.Container {
		return agentapi.Container{ID: fmt.Sprintf("churn-%04d", i), PID: 1000 + i, Name: fmt.Sprintf("c%d", i), Annotations: bigAnnotations("a")}
	})
	envs, total := retained(t, cfg, head)
	if len(envs) != 2*n {
		t.Fatalf("the ring retains %d events, want all %d", len(envs), 2*n)
	}
	for i, env := range envs {
		ann := 0
		for k, v := range env.Event.Container.Annotations {
			ann += len(k) + len(v)
		}
		if ann > 4<<10 {
			t.Fatalf("retained event %d (seq %d) carries %d bytes of annotations, want at most 4 KiB", i, env.Seq, ann)
		}
		if env.Event.Container.Annotations["io.container.manager"] != "libpod" {
			t.Fatalf("retained event %d lost its small annotation: %v", i, env.Event.Container.Annotations)
		}
	}
	if total > 2<<20 {
		t.Fatalf("the ring holds %d bytes of events for %d containers churned, want under 2 MiB", total, n)
	}
}

// TestEventRingBoundedByBytes: events that stay large once slim (here through their labels)
// are retained up to the ring's byte budget, not its 4096 entries; a watcher resuming from an
// event that fell out is told so.
func TestEventRingBoundedByBytes(t *testing.T) {
	const n = 60 // 120 events of about 300 KiB: twice the default 16 MiB budget
	cfg, _ := testConfig(t)
	runAgent(t, cfg)
	cl := client(cfg)
	first, err := cl.Report(ctxT(t), hookStart("first", 0, "first"))
	if err != nil {
		t.Fatal(err)
	}
	head := churn(t, cl, n, func(i int) agentapi.Container {
		labels := map[string]string{}
		for j := range 256 {
			labels[fmt.Sprintf("example.com/label-%03d", j)] = strings.Repeat("v", 1<<10)
		}
		return agentapi.Container{ID: fmt.Sprintf("labelled-%04d", i), PID: 1000 + i, Labels: labels}
	})
	envs, total := retained(t, cfg, head)
	if total > 17<<20 {
		t.Fatalf("the ring holds %d bytes in %d events, want about 16 MiB at most", total, len(envs))
	}
	if envs[len(envs)-1].Seq != head || envs[0].Seq <= first {
		t.Fatalf("the ring holds seqs %d..%d, want the latest ones up to %d, not %d", envs[0].Seq, envs[len(envs)-1].Seq, head, first)
	}
	err = cl.Watch(ctxT(t), first, func(*agentapi.Envelope) error { return nil })
	var ae *agentapi.AgentError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "no longer retained") {
		t.Fatalf("resume from an evicted seq: %v", err)
	}
	// Resuming from the oldest retained event's predecessor still works.
	got := 0
	errDone := errors.New("done")
	err = cl.Watch(ctxT(t), envs[0].Seq-1, func(env *agentapi.Envelope) error {
		got++
		if env.Seq == head {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) || got != len(envs) {
		t.Fatalf("resume from %d: %d events, %v; want %d", envs[0].Seq-1, got, err, len(envs))
	}
}
