package kubearmor

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/karmor/karmor/pkg/policy"
)

// KubeArmor's PolicyService methods, one per kind it takes outside Kubernetes.
const (
	ServiceContainer = "containerPolicy"
	ServiceHost      = "hostPolicy"
)

// Policy event types KubeArmor's PolicyService reads. The feed sends ADDED for new and changed
// policies alike: KubeArmor handles an ADDED for a name it holds as a modification, whereas its
// MODIFIED (as ParseAndUpdateContainerSecurityPolicy reads) leaves the policy store it matches
// new containers against unchanged and, when the selector changed, stores the new endpoint in
// the slot of the last existing one.
const (
	eventAdded   = "ADDED"
	eventDeleted = "DELETED"
)

// maxPolicyObject bounds one converted policy: karmor's policy files are at most 4 MiB, and
// a policy of that size is not one KubeArmor should be sent.
const maxPolicyObject = 4 << 20

// ConvertedPolicy is a policy as KubeArmor's PolicyService takes it outside Kubernetes.
type ConvertedPolicy struct {
	// Service is the method that takes it: ServiceContainer or ServiceHost.
	Service string
	// Name is the policy's name, KubeArmor's only key for it: outside Kubernetes every container
	// policy is put in namespace container_namespace, and its saved copy is a file named after it.
	Name string
	// Object is the JSON object of the event: {"metadata":{"name":N},"spec":{...}}.
	Object json.RawMessage
}

// eventObject is KubeArmor's K8sKubeArmorPolicy / K8sKubeArmorHostPolicy as karmord sends it.
type eventObject struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec *policy.Spec `json:"spec"`
}

// ErrNotSendable wraps the reasons a valid policy is not sent to KubeArmor at all.
var ErrNotSendable = errors.New("not sent to KubeArmor")

// ConvertPolicy maps a validated policy to what KubeArmor's PolicyService takes. KubeArmor's
// spec fields are named as the CRD names them, so the spec goes as karmor's model encodes it.
// KubeArmorClusterPolicy (KubeArmor takes none outside Kubernetes) and KubeArmorNetworkPolicy
// (its networkPolicy service needs KubeArmor's network enforcer, which karmord does not drive)
// are not sent: the error wraps ErrNotSendable.
func ConvertPolicy(p *policy.Policy) (ConvertedPolicy, error) {
	var service string
	switch p.Kind {
	case policy.KindPolicy:
		service = ServiceContainer
	case policy.KindHostPolicy:
		service = ServiceHost
	case policy.KindClusterPolicy:
		return ConvertedPolicy{}, fmt.Errorf("%w: KubeArmor outside Kubernetes takes no cluster policies", ErrNotSendable)
	case policy.KindNetworkPolicy:
		return ConvertedPolicy{}, fmt.Errorf("%w: karmord does not send network policies (KubeArmor's network enforcer)", ErrNotSendable)
	default:
		return ConvertedPolicy{}, fmt.Errorf("%w: unknown kind %q", ErrNotSendable, p.Kind)
	}
	if !safePolicyName(p.Metadata.Name) {
		// KubeArmor saves each policy in a file named after it.
		return ConvertedPolicy{}, fmt.Errorf("%w: metadata.name %.64q is not a Kubernetes object name (lower-case letters, digits, '-', '.')",
			ErrNotSendable, p.Metadata.Name)
	}
	var obj eventObject
	obj.Metadata.Name = p.Metadata.Name
	obj.Spec = &p.Spec
	data, err := json.Marshal(obj)
	if err != nil {
		return ConvertedPolicy{}, fmt.Errorf("%w: %v", ErrNotSendable, err)
	}
	if len(data) > maxPolicyObject {
		return ConvertedPolicy{}, fmt.Errorf("%w: the policy is %d bytes as JSON, over %d", ErrNotSendable, len(data), maxPolicyObject)
	}
	return ConvertedPolicy{Service: service, Name: p.Metadata.Name, Object: data}, nil
}

// policyEvent is the body of one PolicyService call; object is valid JSON (from ConvertPolicy,
// or a ledger entry checked when it was read).
func policyEvent(typ string, object json.RawMessage) []byte {
	out := make([]byte, 0, len(object)+32)
	out = append(out, `{"type":"`...)
	out = append(out, typ...)
	out = append(out, `","object":`...)
	out = append(out, object...)
	return append(out, '}')
}
