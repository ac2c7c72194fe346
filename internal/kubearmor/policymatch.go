package kubearmor

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/karmor/karmor/pkg/agentapi"
	"github.com/karmor/karmor/pkg/policy"
)

// How KubeArmor outside Kubernetes decides which containers and which host a policy sent by the
// policy feed applies to (KubeArmor/core/unorchestratedUpdates.go, common.MatchIdentities), so
// that `karmor policy explain` can say where that differs from karmor's own matching
// (internal/match). KubeArmor turns a container policy's matchLabels into "identities"
// (k=v strings, plus namespaceName=container_namespace) and applies the policy to a container
// when every identity is among the container's labels string, as the container feed sends it,
// or when the container's name equals the kubearmor.io/container.name value. Unlike karmor:
//
//   - matchExpressions are ignored, and the policy's namespace too;
//   - a policy without matchLabels is refused (Invalid), and so is one that puts
//     kubearmor.io/container.name beside other labels;
//   - kubearmor.io/container.name is a POSIX regular expression over the whole
//     "kubearmor.io/container.name=NAME" label, unanchored, so "web" also selects "web2"; and a
//     container without that label is selected by any such policy;
//   - labels the container feed leaves out (over KubeArmor's 4 KiB message, or with a comma)
//     select nothing;
//   - a host policy sees the node only as kubearmor.io/hostname=HOSTNAME: other node labels
//     (karmord's --node-label) and kubernetes.io/hostname never match.

// KubeArmorVerdict is whether KubeArmor outside Kubernetes applies a policy, and why.
type KubeArmorVerdict struct {
	Applies bool
	// Refused is set when KubeArmor answers Invalid to the policy itself.
	Refused bool
	Why     string
}

// ContainerVerdict tells whether KubeArmor applies the container policy p to c, as the container
// feed describes c to KubeArmor (c completed as the feed completes it).
func ContainerVerdict(p *policy.Policy, c *agentapi.Container) KubeArmorVerdict {
	if p.Kind != policy.KindPolicy {
		return KubeArmorVerdict{Why: "KubeArmor outside Kubernetes applies only KubeArmorPolicy to containers"}
	}
	var labels map[string]string
	if p.Spec.Selector != nil {
		labels = p.Spec.Selector.MatchLabels
	}
	if len(labels) == 0 {
		return KubeArmorVerdict{Refused: true, Why: "KubeArmor refuses a policy without matchLabels outside Kubernetes"}
	}
	name, named := labels[LabelContainerName]
	if named && len(labels) > 1 {
		return KubeArmorVerdict{Refused: true, Why: "KubeArmor refuses kubearmor.io/container.name beside other labels"}
	}
	if named {
		if _, err := regexp.CompilePOSIX(name); err != nil {
			return KubeArmorVerdict{Refused: true, Why: fmt.Sprintf("KubeArmor refuses kubearmor.io/container.name %q: not a POSIX regular expression", name)}
		}
	}
	identities := []string{"namespaceName=" + NonKubernetesNamespace}
	for k, v := range labels {
		identities = append(identities, k+"="+v)
	}
	slices.Sort(identities)

	kc, _, _ := describe(c)
	have := strings.Split(LabelsString(c), ",")
	if named && kc.ContainerName == name {
		return KubeArmorVerdict{Applies: true, Why: fmt.Sprintf("its container name %q is the policy's kubearmor.io/container.name", kc.ContainerName)}
	}
	if missing, ok := matchIdentities(identities, have); !ok {
		return KubeArmorVerdict{Why: missing}
	}
	why := "every matchLabels entry is in the labels karmord sends it"
	if named {
		if cn, ok := labelOf(have, LabelContainerName); ok {
			why = fmt.Sprintf("kubearmor.io/container.name %q matches %q as an unanchored regular expression", name, cn)
		} else {
			why = "KubeArmor applies kubearmor.io/container.name policies to containers it has no name label for"
		}
	}
	if p.Spec.Selector != nil && len(p.Spec.Selector.MatchExpressions) > 0 {
		why += "; it ignores matchExpressions"
	}
	return KubeArmorVerdict{Applies: true, Why: why}
}

// NodeVerdict tells whether KubeArmor applies the host policy p to its host, which it knows only
// as kubearmor.io/hostname=hostname.
func NodeVerdict(p *policy.Policy, hostname string) KubeArmorVerdict {
	if p.Kind != policy.KindHostPolicy {
		return KubeArmorVerdict{Why: "KubeArmor outside Kubernetes applies only KubeArmorHostPolicy to the host"}
	}
	var identities []string
	if p.Spec.NodeSelector != nil {
		for k, v := range p.Spec.NodeSelector.MatchLabels {
			identities = append(identities, k+"="+v)
		}
	}
	if len(identities) == 0 {
		return KubeArmorVerdict{Why: "KubeArmor applies a host policy without nodeSelector labels to no host"}
	}
	slices.Sort(identities)
	if missing, ok := matchIdentities(identities, []string{"kubearmor.io/hostname=" + hostname}); !ok {
		return KubeArmorVerdict{Why: missing + " (outside Kubernetes KubeArmor knows its host only as kubearmor.io/hostname=" + hostname + ")"}
	}
	return KubeArmorVerdict{Applies: true, Why: "its nodeSelector matches kubearmor.io/hostname=" + hostname}
}

// matchIdentities is KubeArmor's common.MatchIdentities outside Kubernetes: every identity must
// hold among have. It returns why not when one does not.
func matchIdentities(identities, have []string) (string, bool) {
	for _, id := range identities {
		switch {
		case strings.Contains(id, LabelContainerName):
			// The whole identity is the regular expression, matched against the first label
			// that contains the key; no such label matches.
			for _, h := range have {
				if !strings.Contains(h, LabelContainerName) {
					continue
				}
				re, err := regexp.CompilePOSIX(id)
				if err != nil || !re.MatchString(h) {
					return fmt.Sprintf("%s does not match %q as a regular expression", id, h), false
				}
				break
			}
		case strings.HasPrefix(id, "kubearmor.io/hostnamereg="):
			pattern := strings.ReplaceAll(strings.TrimPrefix(id, "kubearmor.io/hostnamereg="), "*", ".*")
			re, err := regexp.CompilePOSIX(`kubearmor\.io/hostname=` + pattern)
			h, ok := labelOf(have, "kubearmor.io/hostname")
			if ok && (err != nil || !re.MatchString("kubearmor.io/hostname="+h)) {
				return fmt.Sprintf("%s does not match kubearmor.io/hostname=%s", id, h), false
			}
		case strings.HasPrefix(id, "kubearmor.io/hostname="):
			found := false
			for _, v := range strings.Split(strings.TrimPrefix(id, "kubearmor.io/hostname="), ",") {
				if v == "*" {
					_, found = labelOf(have, "kubearmor.io/hostname")
				} else {
					found = slices.Contains(have, "kubearmor.io/hostname="+v)
				}
				if found {
					break
				}
			}
			if !found {
				return id + " does not name this host", false
			}
		default:
			if !slices.Contains(have, id) {
				return id + " is not among the labels karmord sends KubeArmor", false
			}
		}
	}
	return "", true
}

// labelOf returns the value of key among "k=v" labels.
func labelOf(labels []string, key string) (string, bool) {
	for _, l := range labels {
		if k, v, ok := strings.Cut(l, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
