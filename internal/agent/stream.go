package agent

import (
	"fmt"
	"sync/atomic"

	"github.com/karmor/karmor/pkg/agentapi"
)

// stream numbers the events that changed the table, keeps the most recent ones in a ring for
// watchers that resume, and fans new ones out to the watchers. It is not safe for concurrent use;
// Agent guards it with the same mutex as the table, so that a watcher's backlog and its live
// events join without a gap or a duplicate.
//
// Resuming: a watcher asks for the events after from_seq.
//   - from_seq 0 means "whatever is retained": the ring's events, then new ones.
//   - A from_seq inside the ring (or equal to the latest number) resumes exactly.
//   - A from_seq older than the ring is refused with an error naming the oldest retained number:
//     the watcher has missed events and must list the containers again (the list answer carries
//     the sequence number it reflects) and watch from there. The agent does not invent synthetic
//     events, so a watcher never mistakes a snapshot for history.
//   - A from_seq above the latest number is refused too (a number from another agent).
//
// Sequence numbers keep increasing across restarts (see seq.go), so a number from before a
// restart is "older than the ring", never confused with a new event.
type stream struct {
	ring  []streamed // circular; ring[first] is the oldest of count envelopes
	first int
	count int
	head  uint64 // the latest assigned sequence number
	// bytes is the estimated size of the retained envelopes; the ring evicts its oldest ones to
	// keep it within maxBytes, whatever its number of entries. maxBytes also bounds how far (in
	// bytes) a watcher may fall behind.
	bytes    int
	maxBytes int

	watchers map[*watcher]struct{}
	buffer   int
}

// streamed is one envelope of the stream with its estimated size.
type streamed struct {
	env  *agentapi.Envelope
	size int
}

// watcher is one subscribed connection. Its channel is closed when the stream drops it; reason
// then says why (read after the channel is closed, which orders it after the write). pending is
// the size of the envelopes in its channel: the stream adds, the watcher's sender subtracts.
type watcher struct {
	ch      chan streamed
	reason  string
	pending atomic.Int64
}

// took is what the watcher's sender calls for each envelope it takes from the channel: the
// envelope no longer counts against the watcher's byte budget.
func (w *watcher) took(e streamed) *agentapi.Envelope {
	w.pending.Add(-int64(e.size))
	return e.env
}

func newStream(ringSize, ringBytes, buffer int, head uint64) *stream {
	return &stream{ring: make([]streamed, ringSize), maxBytes: ringBytes, head: head, watchers: map[*watcher]struct{}{}, buffer: buffer}
}

// publish numbers env (an event today; other envelope types, such as policy-set changes, can
// share the stream), retains it and hands it to every watcher without ever blocking: a watcher
// whose buffer is full, in entries or bytes, is dropped and told to resume. It returns how many
// watchers were dropped. env must not be modified afterwards: watchers share it.
func (s *stream) publish(env *agentapi.Envelope) (dropped int) {
	s.head++
	env.V = agentapi.Version
	env.Seq = s.head
	e := streamed{env: env, size: envelopeSize(env)}
	s.retain(e)
	for w := range s.watchers {
		if w.pending.Load()+int64(e.size) > int64(s.maxBytes) {
			s.drop(w, fmt.Sprintf("watcher fell behind by more than %d bytes of events (seq %d was not sent); watch again from the last seq received", s.maxBytes, env.Seq))
			dropped++
			continue
		}
		select {
		case w.ch <- e:
			w.pending.Add(int64(e.size))
		default:
			s.drop(w, fmt.Sprintf("watcher fell behind by more than %d events (seq %d was not sent); watch again from the last seq received", s.buffer, env.Seq))
			dropped++
		}
	}
	return dropped
}

// retain adds e to the ring, evicting the oldest envelopes to keep within the ring's entries and
// bytes. An envelope larger than the whole byte budget empties the ring and is not retained
// itself: oldest() then says that nothing before the next event can be resumed from.
func (s *stream) retain(e streamed) {
	if len(s.ring) == 0 {
		return
	}
	for s.count > 0 && (s.count == len(s.ring) || s.bytes+e.size > s.maxBytes) {
		s.bytes -= s.ring[s.first].size
		s.ring[s.first] = streamed{}
		s.first = (s.first + 1) % len(s.ring)
		s.count--
	}
	if e.size > s.maxBytes {
		return
	}
	s.ring[(s.first+s.count)%len(s.ring)] = e
	s.count++
	s.bytes += e.size
}

// oldest is the oldest retained sequence number (head+1 when none is retained).
func (s *stream) oldest() uint64 {
	return s.head - uint64(s.count) + 1
}

// subscribe registers a watcher for the events after from and returns the retained ones it must
// be sent first.
func (s *stream) subscribe(from uint64) ([]*agentapi.Envelope, *watcher, error) {
	if from > s.head {
		return nil, nil, fmt.Errorf("seq %d is ahead of karmord's latest event %d: it comes from another karmord; list the containers and watch from the list's seq", from, s.head)
	}
	if from != 0 && from+1 < s.oldest() {
		return nil, nil, fmt.Errorf("events after seq %d are no longer retained (the oldest is %d): list the containers again and watch from the list's seq", from, s.oldest())
	}
	var backlog []*agentapi.Envelope
	for i := 0; i < s.count; i++ {
		env := s.ring[(s.first+i)%len(s.ring)].env
		if env.Seq > from {
			backlog = append(backlog, env)
		}
	}
	w := &watcher{ch: make(chan streamed, s.buffer)}
	s.watchers[w] = struct{}{}
	return backlog, w, nil
}

// drop closes a watcher's channel, telling it why; dropping twice is harmless.
func (s *stream) drop(w *watcher, reason string) {
	if _, ok := s.watchers[w]; !ok {
		return
	}
	delete(s.watchers, w)
	w.reason = reason
	close(w.ch)
}

// dropAll ends every watcher, at shutdown.
func (s *stream) dropAll(reason string) {
	for w := range s.watchers {
		s.drop(w, reason)
	}
}
