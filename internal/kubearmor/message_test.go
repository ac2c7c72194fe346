package kubearmor

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/karmor/karmor/pkg/agentapi"
)

func decode(t testing.TB, data []byte) request {
	t.Helper()
	var r request
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("message is not JSON: %v: %s", err, data)
	}
	return r
}

func TestCreateMessageKubernetesPod(t *testing.T) {
	c := &agentapi.Container{
		ID: "c0ffee", PID: 4242, Namespaces: map[string]uint64{"pid": 4026532001, "mnt": 4026532002},
		Pod: "web-7d9", Namespace: "shop", ContainerName: "nginx", Name: "nginx", Image: "nginx:1.27",
		AppArmor: "cri-containerd.apparmor.d", Privileged: true,
		Labels: map[string]string{"app": "web", "tier": "front"},
	}
	m, err := CreateMessage(c)
	if err != nil {
		t.Fatal(err)
	}
	r := decode(t, m.Data)
	want := container{
		ContainerID: "c0ffee", ContainerName: "nginx", ContainerImage: "nginx:1.27", NamespaceName: "shop", EndPointName: "web-7d9",
		Labels: "app=web,tier=front", AppArmorProfile: "cri-containerd.apparmor.d", Privileged: true,
		PidNS: 4026532001, MntNS: 4026532002, Pid: 4242,
	}
	if r.Operation != opCreate || r.Detached || r.Container != want {
		t.Fatalf("got %+v\nwant %+v", r, request{Container: want})
	}
	if len(m.Omitted) != 0 || m.ImageOmitted {
		t.Fatalf("nothing should be left out: %+v", m)
	}
	// KubeArmor reads these exact field names (KubeArmor/types.Container).
	for _, field := range []string{`"containerID":`, `"containerName":`, `"namespaceName":`, `"endPointName":`, `"labels":`, `"pidns":`, `"mntns":`, `"pid":`, `"operation":0`, `"detached":false`} {
		if !strings.Contains(string(m.Data), field) {
			t.Errorf("message lacks %s: %s", field, m.Data)
		}
	}
}

func TestCreateMessageOutsideKubernetes(t *testing.T) {
	c := &agentapi.Container{
		ID: "abc123", PID: 7, Name: "web1", Namespaces: map[string]uint64{"pid": 11, "mnt": 12},
		Labels: map[string]string{"tier": "db", "app": "web", LabelContainerName: "spoofed", "namespaceName": "other"},
	}
	m, err := CreateMessage(c)
	if err != nil {
		t.Fatal(err)
	}
	r := decode(t, m.Data)
	if r.Container.NamespaceName != NonKubernetesNamespace || r.Container.ContainerName != "web1" || r.Container.EndPointName != "web1" {
		t.Fatalf("identity: %+v", r.Container)
	}
	// The labels that place the container come first and cannot be overridden by its own.
	if want := "kubearmor.io/container.name=web1,namespaceName=container_namespace,app=web,tier=db"; r.Container.Labels != want {
		t.Fatalf("labels %q, want %q", r.Container.Labels, want)
	}
	slices.Sort(m.Omitted)
	if want := []string{LabelContainerName, "namespaceName"}; !slices.Equal(m.Omitted, want) {
		t.Fatalf("omitted %q, want the container's own %q", m.Omitted, want)
	}
	// A name with a comma would smuggle labels into KubeArmor's string: it is left out.
	smuggle, err := CreateMessage(&agentapi.Container{ID: "s", Name: "web,app=trusted"})
	if err != nil {
		t.Fatal(err)
	}
	if got := decode(t, smuggle.Data).Container.Labels; got != "namespaceName=container_namespace" {
		t.Fatalf("labels of a comma name: %q", got)
	}
	if got := LabelsString(c); got != r.Container.Labels {
		t.Fatalf("LabelsString %q, message %q", got, r.Container.Labels)
	}

	// Without any name, KubeArmor still gets a container name (the id) but no name label, so
	// that no policy for a named container selects it by accident.
	anon, err := CreateMessage(&agentapi.Container{ID: "feed42"})
	if err != nil {
		t.Fatal(err)
	}
	ra := decode(t, anon.Data)
	if ra.Container.ContainerName != "feed42" || ra.Container.Labels != "namespaceName=container_namespace" {
		t.Fatalf("anonymous container: %+v", ra.Container)
	}
}

func TestCreateMessageLeavesOutWhatKubeArmorCannotParse(t *testing.T) {
	c := &agentapi.Container{ID: "x", Name: "n", Labels: map[string]string{
		"ok": "1", "comma": "a,b", "k,ey": "v", "eq=key": "v", "eqvalue": "a=b",
	}}
	m, err := CreateMessage(c)
	if err != nil {
		t.Fatal(err)
	}
	r := decode(t, m.Data)
	if want := "kubearmor.io/container.name=n,namespaceName=container_namespace,eqvalue=a=b,ok=1"; r.Container.Labels != want {
		t.Fatalf("labels %q, want %q", r.Container.Labels, want)
	}
	slices.Sort(m.Omitted)
	if want := []string{"comma", "eq=key", "k,ey"}; !slices.Equal(m.Omitted, want) {
		t.Fatalf("omitted %q, want %q", m.Omitted, want)
	}
}

func TestCreateMessageFitsInKubeArmorsRead(t *testing.T) {
	labels := map[string]string{}
	for i := range 200 {
		labels[fmt.Sprintf("label-%03d", i)] = strings.Repeat("v", 40)
	}
	labels["a-tiny"] = "1"
	labels["zz-last-tiny"] = "2"
	labels["b-huge"] = strings.Repeat("h", 5000)
	c := &agentapi.Container{ID: strings.Repeat("f", 64), Name: "big", Image: "registry.example.com/team/app:1", Labels: labels}
	m, err := CreateMessage(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Data) > MaxMessage {
		t.Fatalf("message is %d bytes, over %d", len(m.Data), MaxMessage)
	}
	r := decode(t, m.Data)
	got := strings.Split(r.Container.Labels, ",")
	if got[0] != "kubearmor.io/container.name=big" || got[1] != "namespaceName=container_namespace" {
		t.Fatalf("the labels that place the container must come first and stay: %q", got[:2])
	}
	if !slices.Contains(got, "a-tiny=1") || !slices.Contains(got, "zz-last-tiny=2") {
		t.Fatal("a short label after one that did not fit must still be sent")
	}
	if !slices.Contains(m.Omitted, "b-huge") {
		t.Fatalf("the 5000-byte label must be left out: omitted %q", m.Omitted)
	}
	if sent, left := len(got)-2, len(m.Omitted); sent+left != len(labels) {
		t.Fatalf("sent %d + omitted %d labels != %d", sent, left, len(labels))
	}
	// Nearly full: the message uses the room it has.
	if len(m.Data) < MaxMessage-60 {
		t.Fatalf("message is %d bytes: labels were left out that fit", len(m.Data))
	}
	if r.Container.ContainerImage == "" || m.ImageOmitted {
		t.Fatal("the image fits and must stay")
	}
}

func TestCreateMessageDropsImageBeforeFailing(t *testing.T) {
	c := &agentapi.Container{ID: "x", Name: "n", Image: strings.Repeat("i", 4100)}
	m, err := CreateMessage(c)
	if err != nil {
		t.Fatal(err)
	}
	if !m.ImageOmitted || decode(t, m.Data).Container.ContainerImage != "" {
		t.Fatalf("image must be left out: %+v", m)
	}
	if _, err := CreateMessage(&agentapi.Container{ID: "x", Name: strings.Repeat("n", 4100)}); err == nil {
		t.Fatal("a name that cannot fit must be an error, never a cut message")
	}
}

func TestDeleteAndReadyMessages(t *testing.T) {
	d := decode(t, DeleteMessage("abc"))
	if d.Operation != opDelete || d.Container.ContainerID != "abc" || d.Detached {
		t.Fatalf("delete: %+v", d)
	}
	if r := decode(t, readyMessage); !r.Detached || r.Operation != opCreate || r.Container.ContainerID != "" {
		t.Fatalf("ready: %+v", r)
	}
	det, err := createMessage(&agentapi.Container{ID: "a", Name: "n"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !decode(t, det.Data).Detached || !decode(t, deleteMessage("a", true)).Detached {
		t.Fatal("resync messages must be detached")
	}
}

func FuzzCreateMessage(f *testing.F) {
	f.Add("id", "name", "ns", "pod", "k", "v", "img", 3)
	f.Add(strings.Repeat("i", 64), "", "", "", "a,b", "c=d", "", 300)
	f.Add("x", "\u2028<&>\"\\", "", "", "\x00", "\xff", strings.Repeat("é", 900), 50)
	f.Fuzz(func(t *testing.T, id, name, ns, pod, key, value, image string, n int) {
		labels := map[string]string{}
		for i := range n % 512 {
			labels[fmt.Sprintf("%s%d", key, i)] = value
		}
		c := &agentapi.Container{ID: id, Name: name, Namespace: ns, Pod: pod, Image: image, Labels: labels}
		m, err := CreateMessage(c)
		if err != nil {
			return // refused whole, never cut
		}
		if len(m.Data) > MaxMessage {
			t.Fatalf("message of %d bytes", len(m.Data))
		}
		r := decode(t, m.Data)
		if ns == "" {
			if !strings.Contains(r.Container.Labels, "namespaceName="+NonKubernetesNamespace) {
				t.Fatalf("non-Kubernetes container without its namespace label: %q", r.Container.Labels)
			}
		}
		sent := 0
		if r.Container.Labels != "" {
			sent = len(strings.Split(r.Container.Labels, ","))
		}
		required := 0
		if ns == "" {
			required = 1 // namespaceName
			if name != "" {
				required++ // the name label, sent or left out
			}
		}
		if sent+len(m.Omitted) != len(labels)+required {
			t.Fatalf("labels: %d sent and %d omitted, want %d own + %d required", sent, len(m.Omitted), len(labels), required)
		}
		for _, pair := range strings.Split(r.Container.Labels, ",") {
			if r.Container.Labels != "" && !strings.Contains(pair, "=") {
				t.Fatalf("labels string %q has a pair without '='", r.Container.Labels)
			}
		}
	})
}
