// Package match decides which KubeArmor policies apply to which containers and to the node,
// explains why each policy does or does not apply, and resolves every applying rule's action
// and severity the way KubeArmor does.
//
// A Set is built once from validated policy documents (NewSet) and is immutable afterwards:
// selectors are compiled, policies are indexed by namespace and by one label, and each policy's
// effective rules are resolved, so that matching a container looks at few policies and
// allocates little. Any number of goroutines may use a Set at once.
//
// # Selection, as upstream KubeArmor's daemon does it (KubeArmor/core/kubeUpdate.go)
//
//   - KubeArmorPolicy selects containers of its own namespace (metadata.namespace, "default"
//     when unset). Every matchLabels entry must be among the pod's labels. An empty selector
//     selects every container of the namespace. matchExpressions with key "label" take
//     "key=value" values: In needs at least one of them on the pod, NotIn needs none.
//   - kubearmor.io/container.name in matchLabels is not a label: its value, "[a, b]" or "a",
//     lists container names, and only those containers of the selected pods are selected.
//   - KubeArmorClusterPolicy selects containers in any namespace. matchExpressions with key
//     "namespace" restrict namespaces (In: only these; NotIn: all but these); "label"
//     expressions work as in a KubeArmorPolicy. An empty selector selects every namespace.
//   - KubeArmorHostPolicy applies to the node, never to containers. Every
//     nodeSelector.matchLabels entry must be among the node's labels; an empty nodeSelector
//     selects no node (upstream's MatchIdentities refuses an empty identity list).
//     kubearmor.io/hostname and kubernetes.io/hostname accept "a,b" and "*";
//     kubearmor.io/hostnamereg and kubernetes.io/hostnamereg take a glob ("node-*").
//   - KubeArmorNetworkPolicy selects containers by its selector in any namespace (the kind is
//     cluster-scoped) or, without one, the node by its nodeSelector.
//
// Containers outside Kubernetes (plain runc, Podman: no namespace) are matched as upstream's
// non-Kubernetes mode does, where every container and every policy share one namespace: a
// KubeArmorPolicy of any namespace selects them by their labels (and their annotations, for
// runtimes without labels) and by kubearmor.io/container.name, which names the container.
// Upstream refuses a policy without matchLabels in that mode, so an empty selector does not
// select containers outside Kubernetes, and cluster policies, which select Kubernetes
// namespaces, never do.
//
// Where upstream's behaviour depends on the order of expressions (a NotIn after an In is
// ignored there), every expression here must hold: In and NotIn of the same key are ANDed.
//
// # Action and severity
//
// A rule's action, severity, tags and message are its own when set, else its block's (process,
// file, network, capabilities, syscalls, device), else the policy's. A policy without an
// action blocks. Syscall rules carry no action: KubeArmor only audits them, so their action is
// Audit.
package match
