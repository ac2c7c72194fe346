// Package kubearmor drives KubeArmor, the enforcer, from karmord: it is the one place that speaks
// KubeArmor's interfaces, fed by the agent's container and policy streams and never on the hook's
// path.
//
//   - The container feed (containers.go, message.go) sends karmord's live containers to
//     KubeArmor's ka.sock, the socket KubeArmor reads containers from when it runs with
//     -useOCIHooks, so that KubeArmor needs no runtime socket. It resyncs the whole set whenever a
//     KubeArmor appears, which also opens KubeArmor's ready gate, then forwards each start and stop.
//   - The policy feed (policies.go) keeps the policies KubeArmor enforces outside Kubernetes,
//     through its gRPC PolicyService, equal to the set karmord has in force.
//
// ka.sock has no framing: one JSON object per write, read by KubeArmor with a single 4096-byte
// read and answered "ok" or "err". A message is therefore never longer than MaxMessage, and
// never split.
package kubearmor
