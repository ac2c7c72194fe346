// Package controller is karmor-controller: it follows KubeArmor policy artifacts in OCI
// registries once per cluster and applies them as KubeArmor custom resources, which the API
// server's watch then carries to every node's KubeArmor. Registry load no longer grows with the
// number of nodes: one manifest request per PolicySource per interval.
//
// # What it reads and writes
//
// A PolicySource (karmor.io/v1alpha1, deploy/helm/karmor/crds/policysources.karmor.io.yaml)
// names an OCI reference, how often to check it, credentials (a dockerconfigjson Secret) and
// the trust to verify it with (keys from a Secret, keyless identities with a trusted root from a
// ConfigMap, notation certificates from a ConfigMap). Each PolicySource gets one
// policysource.OCI, the very code karmord follows references with: resolve, verify before
// fetching, fetch within bounds, validate strictly, and keep the last good set on any failure.
// The source is rebuilt (and its registry memory dropped) when the spec's generation or the
// resourceVersion of a Secret or ConfigMap it names changes; those are read with one GET each
// per check, as the controller may get them but never list or watch them.
//
// What is applied is each document as the artifact holds it, converted from YAML to JSON
// without pkg/policy's typed model (which may drop fields), plus our labels
// (app.kubernetes.io/managed-by, karmor.io/source-namespace, karmor.io/source-name) and
// annotations (karmor.io/source, karmor.io/applied-from, karmor.io/content-hash), without
// server-managed metadata, and with metadata.namespace set for KubeArmorPolicy
// (spec.targetNamespace, else the policy's own, else the PolicySource's) and removed for the
// three cluster-scoped kinds. Two documents naming the same object make the version invalid.
//
// # No disk cache, no needless writes
//
// The objects in the API server are the last good set: a failed check (registry down, an
// unsigned or invalid version) never changes or prunes them, and a controller that starts with
// the registry down changes nothing. An object is written only when its content hash (the
// desired object without applied-from and content-hash) differs from the one it carries, so a
// digest that moves without changing a policy rewrites nothing, and a restart writes nothing:
// not the objects, not the status (which holds no time that changes at every check; a
// condition's lastTransitionTime moves only when its status does), and no Event (Events are
// sent on applies and on a change of the failure reported).
//
// # Drift
//
// An object of ours whose spec, or whose labels and annotations of ours, someone changed while
// leaving its content-hash annotation is put back as the artifact holds it, with an update that
// replaces the whole object (an apply would leave fields another manager added in force), a
// Warning Event DriftCorrected and the metric's "restore" operation. The informer on our objects
// queues the PolicySource at the change, so a weakened policy is restored within one reconcile.
// Labels and annotations others add are theirs and never written back.
//
// # Apply, clash, prune
//
// Server-side apply under the field manager "karmor-controller", forced only over objects that
// are already this PolicySource's. An object of the same name without this PolicySource's
// labels (made by hand, or by another PolicySource) is a clash: never touched, reported in
// Ready=False/NameClash and a Warning Event, while the other policies are still applied. Objects
// of this PolicySource that left the artifact are deleted, with the UID as a precondition, only
// after every object of the new version applied. With spec.prune (the default) the finalizer
// karmor.io/prune makes deleting the PolicySource delete its objects first.
//
// # Running
//
// Informers watch PolicySources (one namespace with --watch-namespace) and the four KubeArmor
// kinds filtered by managed-by=karmor-controller, so an object of ours deleted or changed
// behind our back queues its PolicySource (and is re-created from memory, without asking the
// registry). A kind whose CRD is missing is reported in status ("install KubeArmor's CRDs")
// and its informer started once it is served. A rate-limited workqueue retries failures; a
// source is checked again after spec.interval ±10%; events in between reconcile from memory
// only. With leader election (a Lease) only the leader reconciles; a replica that loses the
// lease exits to start over as a candidate, and one shutting down releases it.
//
// Decisions where the contract is silent: spec.interval and spec.timeout below 1s are refused
// (ConfigError); without spec.secretRef the registry is reached anonymously (never with the
// controller's own Docker config); targetNamespace lets a
// PolicySource place KubeArmorPolicies in any namespace, so who may create PolicySources is who
// may write policies cluster-wide; Verified is True with reason VerificationNotConfigured when
// spec.verify is absent; Ready is False with reason Suspended while spec.suspend is set.
package controller
