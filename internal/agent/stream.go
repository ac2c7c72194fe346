package agent

import (
	"fmt"

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
	ring  []*agentapi.Envelope // circular; ring[first] is the oldest of count envelopes
	first int
	count int
	head  uint64 // the latest assigned sequence number

	watchers map[*watcher]struct{}
	buffer   int
}

// watcher is one subscribed connection. Its channel is closed when the stream drops it; reason
// then says why (read after the channel is closed, which orders it after the write).
type watcher struct {
	ch     chan *agentapi.Envelope
	reason string
}

func newStream(ringSize, buffer int, head uint64) *stream {
	return &stream{ring: make([]*agentapi.Envelope, ringSize), head: head, watchers: map[*watcher]struct{}{}, buffer: buffer}
}

// publish numbers env (an event today; other envelope types, such as policy-set changes, can
// share the stream), retains it and hands it to every watcher without ever blocking: a watcher
// whose buffer is full is dropped and told to resume. It returns how many watchers were dropped.
// env must not be modified afterwards: watchers share it.
func (s *stream) publish(env *agentapi.Envelope) (dropped int) {
	s.head++
	env.V = agentapi.Version
	env.Seq = s.head
	if len(s.ring) > 0 {
		if s.count < len(s.ring) {
			s.ring[(s.first+s.count)%len(s.ring)] = env
			s.count++
		} else {
			s.ring[s.first] = env
			s.first = (s.first + 1) % len(s.ring)
		}
	}
	for w := range s.watchers {
		select {
		case w.ch <- env:
		default:
			s.drop(w, fmt.Sprintf("watcher fell behind by more than %d events (seq %d was not sent); watch again from the last seq received", s.buffer, env.Seq))
			dropped++
		}
	}
	return dropped
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
		env := s.ring[(s.first+i)%len(s.ring)]
		if env.Seq > from {
			backlog = append(backlog, env)
		}
	}
	w := &watcher{ch: make(chan *agentapi.Envelope, s.buffer)}
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
