// Package policy is karmor's model of KubeArmor security policies (apiVersion
// security.kubearmor.com/v1: KubeArmorPolicy, KubeArmorHostPolicy, KubeArmorClusterPolicy and
// KubeArmorNetworkPolicy) and its strict parser and validator.
//
// Validation enforces exactly what the upstream CRDs' openAPIV3Schema enforces (types, enums,
// patterns, bounds, required fields), reads YAML scalars the way kubectl and the API server do
// (YAML 1.1: `yes` is a boolean), prunes null fields as the API server does, and, like
// `kubectl --validate=strict`, refuses unknown fields and duplicate keys unless Options.Lenient.
// Every issue carries the file, the document index, line:column and the field path.
//
// Input is untrusted: files are size-bounded, alias expansion and nesting depth are bounded, and
// nothing panics. The same parser serves `karmor policy validate`, `karmor oci push/pull` and
// karmord's policy sources.
package policy
