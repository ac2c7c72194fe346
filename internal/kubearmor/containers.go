package kubearmor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/karmor/karmor/pkg/agentapi"
)

// DefaultSocket is where KubeArmor listens for containers when it runs with -useOCIHooks.
const DefaultSocket = "/var/run/kubearmor/ka.sock"

// Defaults for ContainerFeedOptions.
const (
	DefaultQueueLimit    = 4096
	DefaultWatchInterval = time.Second
	DefaultAnswerTimeout = 5 * time.Second
	DefaultMinBackoff    = 20 * time.Millisecond
	DefaultMaxBackoff    = 2 * time.Second
)

// errAnswersBeforeResync is how many "err" answers in a row make the feed send the whole set
// again: KubeArmor answers err to live messages until its ready gate opens, which only a
// connection of detached messages opens.
const errAnswersBeforeResync = 10

// ContainerFeedOptions configures a ContainerFeed.
type ContainerFeedOptions struct {
	// Socket is KubeArmor's ka.sock (default DefaultSocket).
	Socket string
	// Describe, when set, completes a container before it is sent (labels karmord keeps outside
	// its table: a pod's labels from the API, a Podman container's from libpod's database). It is
	// called on the feed's goroutine with a copy the feed owns.
	Describe func(c *agentapi.Container)
	// QueueLimit bounds the starts and stops waiting for KubeArmor while it is connected; past it
	// the queue is dropped and the whole set is sent again instead (default DefaultQueueLimit).
	QueueLimit int
	// WatchInterval is how often the socket is checked for a new KubeArmor (default 1 s).
	WatchInterval time.Duration
	// AnswerTimeout bounds the wait for each answer (default 5 s).
	AnswerTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries, which doubles from the first to
	// the second.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives KubeArmor's comings and goings and what could not be sent (default
	// slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, receives the feed's metrics.
	Registerer prometheus.Registerer
}

func (o ContainerFeedOptions) withDefaults() ContainerFeedOptions {
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if o.QueueLimit <= 0 {
		o.QueueLimit = DefaultQueueLimit
	}
	if o.WatchInterval <= 0 {
		o.WatchInterval = DefaultWatchInterval
	}
	if o.AnswerTimeout <= 0 {
		o.AnswerTimeout = DefaultAnswerTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// ContainerFeed tells KubeArmor, over its ka.sock, about every container karmord knows, so that
// KubeArmor needs no runtime socket.
//
// karmord calls Started and Stopped in the order its table changes; they only record the change
// and wake the feed's goroutine, so the hook's acknowledgement never waits for KubeArmor. The
// goroutine (Run) keeps KubeArmor's view equal to karmord's:
//
//   - Whenever a KubeArmor appears (at start, or a new socket: KubeArmor started or restarted, or
//     a refused socket that accepts again), the feed sends every live container as detached
//     messages on one connection and closes it, which opens KubeArmor's ready gate, with a single
//     empty detached message when there are no containers. KubeArmor forgets its containers when
//     it restarts, so the feed never assumes a new KubeArmor has any.
//   - Then each start and stop is sent in order on one connection, waiting for each answer;
//     "err" answers and failures are retried with a doubling, bounded backoff.
//   - While KubeArmor is away nothing is queued: the live set is all it must learn (a container
//     that started and stopped meanwhile is never sent), and it is sent whole when KubeArmor
//     returns. A resync to the same KubeArmor (after a failure or a queue overflow) first deletes
//     the containers it was told about that have stopped since.
type ContainerFeed struct {
	opts    ContainerFeedOptions
	log     *slog.Logger
	metrics *containerMetrics

	mu sync.Mutex
	// live is karmord's live set as reported through Started and Stopped.
	live map[string]*agentapi.Container
	// queue holds the changes not yet sent, in order; it is empty while a resync is due.
	queue []change
	// resync is set when the whole live set must be sent before anything else.
	resync       bool
	resyncReason string
	// has holds the containers the current KubeArmor acknowledged (create answered ok).
	has map[string]bool
	// connected is true while the current KubeArmor is known and in sync.
	connected bool

	wake chan struct{}
}

type change struct {
	id    string
	start bool
}

// NewContainerFeed returns a feed; nothing is sent until Run.
func NewContainerFeed(opts ContainerFeedOptions) *ContainerFeed {
	opts = opts.withDefaults()
	f := &ContainerFeed{
		opts:         opts,
		log:          opts.Logger.With("kubearmor_socket", opts.Socket),
		live:         map[string]*agentapi.Container{},
		has:          map[string]bool{},
		resync:       true,
		resyncReason: "karmord started",
		wake:         make(chan struct{}, 1),
	}
	f.metrics = newContainerMetrics(opts.Registerer, f)
	return f
}

// Started records that c started (or changed). It never blocks on KubeArmor.
func (f *ContainerFeed) Started(c agentapi.Container) {
	f.mu.Lock()
	if old := f.live[c.ID]; old != nil && !sameForKubeArmor(old, &c) {
		// KubeArmor ignores a create for an id it has: a new incarnation (new namespaces) or a
		// new identity reaches it only as a delete and a create.
		f.enqueue(change{id: c.ID})
	}
	f.live[c.ID] = &c
	f.enqueue(change{id: c.ID, start: true})
	f.mu.Unlock()
	f.signal()
}

// Stopped records that container id stopped. It never blocks on KubeArmor.
func (f *ContainerFeed) Stopped(id string) {
	f.mu.Lock()
	delete(f.live, id)
	f.enqueue(change{id: id})
	f.mu.Unlock()
	f.signal()
}

// sameForKubeArmor reports whether a and b, two reports of one container id, tell KubeArmor the
// same thing (labels filled in later by Describe are not compared: they come from the same pod or
// container).
func sameForKubeArmor(a, b *agentapi.Container) bool {
	return a.PID == b.PID && a.Namespaces["pid"] == b.Namespaces["pid"] && a.Namespaces["mnt"] == b.Namespaces["mnt"] &&
		a.Name == b.Name && a.ContainerName == b.ContainerName && a.Namespace == b.Namespace && a.Pod == b.Pod &&
		a.Image == b.Image && a.AppArmor == b.AppArmor && a.Privileged == b.Privileged && maps.Equal(a.Labels, b.Labels)
}

// enqueue queues ch unless a resync will carry it. The caller holds f.mu.
func (f *ContainerFeed) enqueue(ch change) {
	if f.resync {
		return
	}
	if len(f.queue) >= f.opts.QueueLimit {
		f.requestResync(fmt.Sprintf("more than %d changes waiting for KubeArmor", f.opts.QueueLimit))
		return
	}
	f.queue = append(f.queue, ch)
}

// requestResync drops the queue: the next round sends the whole live set. The caller holds f.mu.
func (f *ContainerFeed) requestResync(reason string) {
	if !f.resync {
		f.resync, f.resyncReason = true, reason
	}
	f.queue = nil
}

func (f *ContainerFeed) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// State tells whether KubeArmor has container id: "yes" when the KubeArmor now running
// acknowledged it, "pending" while it is on its way, "away" while KubeArmor is not reachable.
func (f *ContainerFeed) State(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case !f.connected:
		return "away"
	case f.has[id]:
		return "yes"
	default:
		return "pending"
	}
}

// Connected reports whether a KubeArmor is reachable and in sync with karmord's containers.
func (f *ContainerFeed) Connected() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connected
}

// socketID identifies one KubeArmor's socket: a restarted KubeArmor removes its socket and
// listens on a new one. The modification time tells a new socket from an old one whose inode
// number was reused; not the change time, which KubeArmor's chmod of ka.sock right after
// listening moves, so a feed that looked in between took the same KubeArmor for a new one and
// sent it every container twice ("container already exists").
type socketID struct {
	dev, ino uint64
	mtime    int64
}

func statSocket(path string) (socketID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return socketID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return socketID{}, fmt.Errorf("%s: no stat data", path)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return socketID{}, fmt.Errorf("%s is not a socket", path)
	}
	return socketID{dev: uint64(st.Dev), ino: st.Ino, mtime: st.Mtim.Nano()}, nil
}

// Run keeps KubeArmor in step with the containers until ctx ends.
func (f *ContainerFeed) Run(ctx context.Context) {
	s := &session{f: f}
	defer s.close()
	backoff := f.opts.MinBackoff
	watch := time.NewTicker(f.opts.WatchInterval)
	defer watch.Stop()
	for {
		err := s.step(ctx)
		switch {
		case err == nil:
			backoff = f.opts.MinBackoff
		case ctx.Err() != nil:
			return
		default:
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, f.opts.MaxBackoff)
			continue
		}
		if !s.idle() {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-watch.C:
			s.checkSocket()
		}
	}
}

// session is the feed's goroutine state: the KubeArmor it talks to and the open connection.
type session struct {
	f    *ContainerFeed
	id   socketID // the KubeArmor in sync; zero before the first resync
	conn net.Conn
	errs int // "err" answers in a row
	// waiting is set once the feed has said KubeArmor is not reachable, until it is back.
	waiting bool
	// built is the message of the latest start tried, kept for its retries.
	built struct {
		c   *agentapi.Container
		msg []byte
	}
}

func (s *session) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// idle reports whether nothing waits to be sent.
func (s *session) idle() bool {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.resync && len(f.queue) == 0
}

// checkSocket notices a KubeArmor that went away or was replaced while the feed was idle.
func (s *session) checkSocket() {
	f := s.f
	id, err := statSocket(f.opts.Socket)
	if err == nil && id == s.id {
		return
	}
	reason := "KubeArmor restarted (new socket)"
	if err != nil {
		reason = "KubeArmor's socket is gone: " + err.Error()
	}
	s.lost(reason)
}

// lost marks KubeArmor away: the whole set goes to the next one.
func (s *session) lost(reason string) {
	f := s.f
	s.close()
	f.mu.Lock()
	was := f.connected
	f.connected = false
	f.requestResync(reason)
	f.mu.Unlock()
	f.metrics.connected.Set(0)
	switch {
	case was:
		f.log.Warn("KubeArmor went away; its containers are sent again when it is back", "reason", reason)
		s.waiting = true
	case !s.waiting:
		f.log.Info("waiting for KubeArmor", "reason", reason)
		s.waiting = true
	}
}

// step does one unit of work: a resync, or the next queued change.
func (s *session) step(ctx context.Context) error {
	f := s.f
	f.mu.Lock()
	if f.resync {
		f.mu.Unlock()
		return s.resync(ctx)
	}
	if len(f.queue) == 0 {
		f.mu.Unlock()
		return nil
	}
	ch := f.queue[0]
	var c *agentapi.Container
	if ch.start {
		c = f.live[ch.id]
	}
	f.mu.Unlock()

	var msg []byte
	if ch.start {
		if c == nil {
			// Stopped since: its stop is queued behind this start, and KubeArmor need not hear
			// of it at all.
			s.dequeue(ch, false)
			return nil
		}
		if s.built.c != c {
			// Built once per report, not per attempt: what is left out is logged once.
			m, ok := s.build(c, false)
			if !ok {
				s.dequeue(ch, false)
				return nil
			}
			s.built.c, s.built.msg = c, m
		}
		msg = s.built.msg
	} else {
		msg = DeleteMessage(ch.id)
	}
	answer, err := s.send(ctx, msg)
	if err != nil {
		f.metrics.retries.WithLabelValues("failure").Inc()
		return err
	}
	if answer != "ok" {
		f.metrics.retries.WithLabelValues("err").Inc()
		s.errs++
		if s.errs >= errAnswersBeforeResync {
			s.errs = 0
			f.mu.Lock()
			f.requestResync(fmt.Sprintf("KubeArmor answered %q %d times in a row", answer, errAnswersBeforeResync))
			f.mu.Unlock()
		}
		return fmt.Errorf("KubeArmor answered %q", answer)
	}
	s.errs = 0
	s.dequeue(ch, true)
	return nil
}

// dequeue removes ch, the head of the queue, recording what KubeArmor now has when sent.
func (s *session) dequeue(ch change, sent bool) {
	f := s.f
	f.mu.Lock()
	if len(f.queue) > 0 && f.queue[0] == ch {
		f.queue = f.queue[1:]
	}
	if sent {
		if ch.start {
			f.has[ch.id] = true
		} else {
			delete(f.has, ch.id)
		}
	}
	f.mu.Unlock()
	if sent {
		op := "delete"
		if ch.start {
			op = "create"
		}
		f.metrics.sent.WithLabelValues(op).Inc()
	}
}

// build completes a copy of c and encodes it, logging and counting what was left out. ok is false
// when the container cannot be sent at all.
func (s *session) build(c *agentapi.Container, detached bool) (msg []byte, ok bool) {
	f := s.f
	cp := *c
	if f.opts.Describe != nil {
		f.opts.Describe(&cp)
	}
	m, err := createMessage(&cp, detached)
	if err != nil {
		f.metrics.unsendable.Inc()
		f.log.Error("container not sent to KubeArmor", "id", c.ID, "err", err)
		return nil, false
	}
	if len(m.Omitted) > 0 || m.ImageOmitted {
		f.metrics.omitted.Add(float64(len(m.Omitted)))
		f.log.Warn("labels left out of the container sent to KubeArmor: its policies cannot select them",
			"id", c.ID, "labels", m.Omitted, "image_left_out", m.ImageOmitted, "limit_bytes", MaxMessage)
	}
	return m.Data, true
}

// dial connects to the KubeArmor listening on the socket now and returns its identity.
func (s *session) dial() (socketID, error) {
	f := s.f
	id, err := statSocket(f.opts.Socket)
	if err != nil {
		return socketID{}, err
	}
	conn, err := net.DialTimeout("unix", f.opts.Socket, f.opts.AnswerTimeout)
	if err != nil {
		return socketID{}, err
	}
	s.conn = conn
	return id, nil
}

// send writes one message on the open connection (dialling one when none is open) and returns
// KubeArmor's answer. Any failure closes the connection; a KubeArmor that was replaced meanwhile
// turns into a resync.
func (s *session) send(ctx context.Context, msg []byte) (string, error) {
	if s.conn == nil {
		id, err := s.dial()
		if err != nil {
			s.lost("cannot connect: " + err.Error())
			return "", err
		}
		if id != s.id {
			s.lost("KubeArmor restarted (new socket)")
			return "", errors.New("KubeArmor restarted")
		}
	}
	answer, err := exchange(ctx, s.conn, msg, s.f.opts.AnswerTimeout)
	if err != nil {
		s.close()
		if _, serr := statSocket(s.f.opts.Socket); serr != nil {
			s.lost("KubeArmor's socket is gone: " + serr.Error())
		}
		return "", err
	}
	return answer, nil
}

// exchange writes msg and reads the answer ("ok" or "err"), within timeout and until ctx ends.
func exchange(ctx context.Context, conn net.Conn, msg []byte, timeout time.Duration) (string, error) {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := conn.Write(msg); err != nil {
		return "", fmt.Errorf("write to KubeArmor: %w", err)
	}
	var buf [16]byte
	n, err := conn.Read(buf[:])
	if err != nil {
		return "", fmt.Errorf("read KubeArmor's answer: %w", err)
	}
	return string(buf[:n]), nil
}

// resync sends the whole live set as detached messages on one new connection and closes it,
// which tells a new KubeArmor everything and opens its ready gate.
func (s *session) resync(ctx context.Context) error {
	f := s.f
	began := time.Now()
	s.close()
	f.mu.Lock()
	reason := f.resyncReason
	f.resync, f.queue = false, nil
	live := make([]*agentapi.Container, 0, len(f.live))
	for _, c := range f.live {
		live = append(live, c)
	}
	known := make([]string, 0, len(f.has))
	for id := range f.has {
		if f.live[id] == nil {
			known = append(known, id)
		}
	}
	f.mu.Unlock()

	fail := func(err error) error {
		s.close()
		f.mu.Lock()
		f.requestResync(reason)
		f.mu.Unlock()
		return err
	}
	id, err := s.dial()
	if err != nil {
		s.lost("cannot connect: " + err.Error())
		return err
	}
	fresh := id != s.id
	if fresh {
		known = nil // a new KubeArmor knows no container
	}
	sent := map[string]bool{}
	var msgs int
	for _, stopped := range known {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		if err := s.expectOK(ctx, deleteMessage(stopped, true)); err != nil {
			return fail(err)
		}
		msgs++
	}
	for _, c := range live {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		msg, ok := s.build(c, true)
		if !ok {
			continue
		}
		if err := s.expectOK(ctx, msg); err != nil {
			return fail(err)
		}
		sent[c.ID] = true
		msgs++
	}
	if msgs == 0 {
		if err := s.expectOK(ctx, readyMessage); err != nil {
			return fail(err)
		}
	}
	s.close() // closing the detached connection is what opens the ready gate

	f.mu.Lock()
	f.has = sent
	was := f.connected
	f.connected = true
	f.mu.Unlock()
	s.id = id
	s.errs = 0
	s.waiting = false
	f.metrics.connected.Set(1)
	f.metrics.resyncs.Inc()
	f.metrics.sent.WithLabelValues("create").Add(float64(len(sent)))
	f.metrics.sent.WithLabelValues("delete").Add(float64(len(known)))
	level := slog.LevelInfo
	if was && !fresh {
		level = slog.LevelDebug
	}
	f.log.Log(ctx, level, "KubeArmor is in sync", "reason", reason, "new_kubearmor", fresh,
		"containers", len(sent), "deleted", len(known), "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// expectOK sends one resync message and requires KubeArmor's "ok": detached messages are never
// refused by a KubeArmor that reads them.
func (s *session) expectOK(ctx context.Context, msg []byte) error {
	answer, err := exchange(ctx, s.conn, msg, s.f.opts.AnswerTimeout)
	if err != nil {
		return err
	}
	if answer != "ok" {
		return fmt.Errorf("KubeArmor answered %q to a detached message", answer)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
