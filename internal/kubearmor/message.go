package kubearmor

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/karmor/karmor/pkg/agentapi"
)

// MaxMessage is the most KubeArmor reads of one ka.sock message: it reads each request with a
// single 4096-byte read, so a longer message is cut and breaks. A message is never split.
const MaxMessage = 4096

// NonKubernetesNamespace is the namespace KubeArmor's non-Kubernetes mode gives every container
// and every policy: its policies select containers by the labels string, which must therefore
// carry namespaceName=container_namespace too.
const NonKubernetesNamespace = "container_namespace"

// LabelContainerName is the label KubeArmor's non-Kubernetes policies select a container's name
// with (matched as a regular expression).
const LabelContainerName = "kubearmor.io/container.name"

// ka.sock operations (KubeArmor's HookOperation).
const (
	opCreate = 0
	opDelete = 1
)

// request is one ka.sock message, KubeArmor's HookRequest.
type request struct {
	Operation int       `json:"operation"`
	Detached  bool      `json:"detached"`
	Container container `json:"container"`
}

// container carries the fields of KubeArmor's Container that it reads from a hook.
type container struct {
	ContainerID     string `json:"containerID"`
	ContainerName   string `json:"containerName,omitempty"`
	ContainerImage  string `json:"containerImage,omitempty"`
	NamespaceName   string `json:"namespaceName,omitempty"`
	EndPointName    string `json:"endPointName,omitempty"`
	Labels          string `json:"labels,omitempty"`
	AppArmorProfile string `json:"apparmorProfile,omitempty"`
	Privileged      bool   `json:"privileged,omitempty"`
	PidNS           uint32 `json:"pidns,omitempty"`
	MntNS           uint32 `json:"mntns,omitempty"`
	Pid             uint32 `json:"pid,omitempty"`
}

// Message is a ka.sock create message built from one of karmord's containers.
type Message struct {
	// Data is the JSON KubeArmor receives, at most MaxMessage bytes.
	Data []byte
	// Omitted names the labels left out: they did not fit in MaxMessage, or KubeArmor's labels
	// string cannot carry them (a comma in the key or value, an '=' in the key).
	Omitted []string
	// ImageOmitted is set when the image name was left out to make the message fit.
	ImageOmitted bool
}

// CreateMessage maps c to the message that tells KubeArmor the container started.
//
// A Kubernetes container (one with a pod namespace) is sent as KubeArmor's Kubernetes mode
// knows it: namespaceName the pod's namespace, endPointName the pod, containerName the
// container's name, labels the pod's labels. Any other container is sent as KubeArmor's
// non-Kubernetes mode matches it: namespaceName container_namespace and the labels
// "kubearmor.io/container.name=NAME,namespaceName=container_namespace" followed by the
// container's own labels.
//
// KubeArmor's labels string is "k=v" pairs joined by commas, so a label with a comma in its key
// or value, or an '=' in its key, cannot be carried and is left out. When the message would exceed
// MaxMessage, labels are added in key order and each one that would not fit is left out (a later,
// shorter one may still fit); the labels that select the container's name and namespace are never
// left out. If it still does not fit, the image name is left out. Everything left out is listed in
// the Message for the caller to log and count. Outside Kubernetes, a container's own labels named
// kubearmor.io/container.name or namespaceName are left out too (karmord sets those), and so is a
// name with a comma in it (it would smuggle labels of its choosing into the string).
func CreateMessage(c *agentapi.Container) (Message, error) {
	return createMessage(c, false)
}

// createMessage is CreateMessage; detached marks the message as part of a resync, which KubeArmor
// handles before its ready gate opens (the gate opens once the connection that carried them
// closes).
func createMessage(c *agentapi.Container, detached bool) (Message, error) {
	kc, required, optional := describe(c)
	var m Message
	// Labels KubeArmor cannot parse are left out whatever the size.
	usable := optional[:0:0]
	for _, l := range optional {
		if !expressible(l) || (len(required) > 0 && (l.key == LabelContainerName || l.key == "namespaceName")) {
			// Outside Kubernetes the labels that place the container are karmord's to set.
			m.Omitted = append(m.Omitted, l.key)
			continue
		}
		usable = append(usable, l)
	}

	encode := func(labels []string) ([]byte, error) {
		kc.Labels = strings.Join(labels, ",")
		return json.Marshal(request{Operation: opCreate, Detached: detached, Container: kc})
	}
	labels := make([]string, 0, len(required)+len(usable))
	for _, l := range required {
		labels = append(labels, l.String())
	}
	base, err := encode(labels)
	if err != nil {
		return Message{}, err
	}
	if len(base) > MaxMessage && kc.ContainerImage != "" {
		kc.ContainerImage = ""
		m.ImageOmitted = true
		if base, err = encode(labels); err != nil {
			return Message{}, err
		}
	}
	if len(base) > MaxMessage {
		return Message{}, fmt.Errorf("container %s: the message KubeArmor needs is %d bytes even without labels and image, over its %d-byte limit", c.ID, len(base), MaxMessage)
	}
	// Each label adds its JSON-escaped "k=v" and a comma; measuring each one alone keeps this
	// linear in the number of labels.
	room := MaxMessage - len(base)
	for _, l := range usable {
		cost := jsonLen(l.String()) + 1
		if len(labels) == 0 {
			cost--
		}
		if cost > room {
			m.Omitted = append(m.Omitted, l.key)
			continue
		}
		room -= cost
		labels = append(labels, l.String())
	}
	if m.Data, err = encode(labels); err != nil {
		return Message{}, err
	}
	if len(m.Data) > MaxMessage { // cannot happen if jsonLen is right; never send a cut message
		return Message{}, fmt.Errorf("container %s: message of %d bytes exceeds KubeArmor's %d-byte limit", c.ID, len(m.Data), MaxMessage)
	}
	return m, nil
}

// DeleteMessage is the message that tells KubeArmor the container is gone: only its id counts.
func DeleteMessage(id string) []byte { return deleteMessage(id, false) }

func deleteMessage(id string, detached bool) []byte {
	return encodeRequest(request{Operation: opDelete, Detached: detached, Container: container{ContainerID: id}})
}

// readyMessage opens KubeArmor's ready gate when there is no container to send: a detached
// create with an empty container, which KubeArmor acknowledges and then ignores ("container ID is
// empty").
var readyMessage = encodeRequest(request{Operation: opCreate, Detached: true})

func encodeRequest(r request) []byte {
	b, err := json.Marshal(r)
	if err != nil { // only strings, numbers and booleans: cannot fail
		panic("kubearmor: encoding a ka.sock message: " + err.Error())
	}
	return b
}

type label struct{ key, value string }

// expressible reports whether KubeArmor's labels string can carry l: it splits the string at
// commas and each pair at its first '='.
func expressible(l label) bool {
	return l.key != "" && !strings.ContainsAny(l.key, ",=") && !strings.ContainsRune(l.value, ',')
}

func (l label) String() string { return l.key + "=" + l.value }

// describe returns KubeArmor's view of c without labels, the labels that must be sent (they
// select the container at all) and the container's own labels in key order.
func describe(c *agentapi.Container) (kc container, required, optional []label) {
	kc = container{
		ContainerID:     c.ID,
		ContainerImage:  c.Image,
		AppArmorProfile: c.AppArmor,
		Privileged:      c.Privileged,
		PidNS:           inode32(c.Namespaces["pid"]),
		MntNS:           inode32(c.Namespaces["mnt"]),
	}
	if c.PID > 0 && c.PID <= math.MaxUint32 {
		kc.Pid = uint32(c.PID)
	}
	own := make([]label, 0, len(c.Labels))
	for k, v := range c.Labels {
		own = append(own, label{k, v})
	}
	sort.Slice(own, func(i, j int) bool { return own[i].key < own[j].key })

	if c.Namespace != "" {
		kc.NamespaceName = c.Namespace
		kc.EndPointName = c.Pod
		kc.ContainerName = firstNonEmpty(c.ContainerName, c.Name, c.ID)
		return kc, nil, own
	}
	name := firstNonEmpty(c.Name, c.ContainerName)
	kc.NamespaceName = NonKubernetesNamespace
	kc.ContainerName = firstNonEmpty(name, c.ID)
	kc.EndPointName = kc.ContainerName
	switch {
	case strings.ContainsRune(name, ','):
		// KubeArmor splits the labels string at commas: such a name would smuggle in labels
		// of its choosing. It is left out (see CreateMessage).
		optional = append(optional, label{LabelContainerName, name})
	case name != "":
		required = append(required, label{LabelContainerName, name})
	}
	required = append(required, label{"namespaceName", NonKubernetesNamespace})
	return kc, required, append(optional, own...)
}

// LabelsString is the labels string KubeArmor receives for c (see CreateMessage), for explaining
// what KubeArmor matches.
func LabelsString(c *agentapi.Container) string {
	m, err := CreateMessage(c)
	if err != nil {
		return ""
	}
	var r request
	if json.Unmarshal(m.Data, &r) != nil {
		return ""
	}
	return r.Container.Labels
}

// inode32 returns a namespace inode as KubeArmor's uint32 field holds it; nsfs inodes fit.
func inode32(ino uint64) uint32 {
	if ino > math.MaxUint32 {
		return 0
	}
	return uint32(ino)
}

// jsonLen is the length of s once encoded as the inside of a JSON string by encoding/json.
func jsonLen(s string) int {
	b, _ := json.Marshal(s)
	return len(b) - 2
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
