// Package agentapi is the protocol between karmord and its clients: karmor-hook, which reports
// container starts and stops, and the karmor CLI, which lists and watches containers and asks
// which policies apply to them.
//
// It imports only the standard library, because karmor-hook links it and runs on every container
// start.
//
// # Framing
//
// Every message is one frame: a 4-byte big-endian length N, then N bytes of JSON holding an
// Envelope. N is at most MaxFrame. The envelope's V field is the protocol version; a peer answers a
// version it does not know with an error envelope rather than guessing.
//
// # Exchanges
//
//   - Report: the hook sends {type: "event"} and waits for {type: "ack", seq} or {type: "error"}.
//   - List / Get: the client sends {type: "list"} or {type: "get", id} and receives one
//     {type: "containers"} envelope. A list request with chunked: true is answered in as many
//     frames as the list needs, each {type: "containers"} of the same snapshot (same seq), all
//     but the last with more: true; without it, a list that does not fit one frame is an error.
//     A list answer and watched events carry containers slim: annotations only up to
//     SlimAnnotationValueBytes each and SlimAnnotationBytes per container, annotations_omitted
//     counting the rest; get answers a container whole. docs/agent-socket.md has the details.
//   - Watch: the client sends {type: "watch", from_seq}; the agent streams {type: "event"} and
//     {type: "policy_change"} envelopes, each with its sequence number, first the retained ones
//     after from_seq, then new ones, until the client closes the connection. A list answer's seq
//     is the latest event it reflects, so watching from it joins the list without a gap.
//   - Policies: the client sends {type: "policy_list"} and receives {type: "policy_state"}; it
//     sends {type: "explain", id} (or {type: "explain", node: true}) and receives
//     {type: "explanation"}. A list or get answer carries each container's matching policies
//     and the generation of the policy set they come from (policy_generation).
package agentapi
