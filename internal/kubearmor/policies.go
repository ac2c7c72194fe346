package kubearmor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/karmor/karmor/internal/kubearmor/kapb"
	"github.com/karmor/karmor/internal/match"
)

// DefaultPolicyAddr is where KubeArmor serves its gRPC API outside Kubernetes.
const DefaultPolicyAddr = "127.0.0.1:32767"

// Defaults for PolicyFeedOptions.
const (
	DefaultCallTimeout = 5 * time.Second
	DefaultSettleDelay = 3 * time.Second
)

// Policy states beyond KubeArmor's own answers (Applied, Invalid, NotEnabled, Failure, ...).
const (
	// PolicyPending: karmord has not had KubeArmor's answer for the policy as it is now.
	PolicyPending = "Pending"
	// PolicyAway: KubeArmor is not reachable.
	PolicyAway = "Away"
	// PolicyNotSent: the policy is not sent to KubeArmor at all (see the detail).
	PolicyNotSent = "NotSent"
)

// PolicyFeedOptions configures a PolicyFeed.
type PolicyFeedOptions struct {
	// Addr is KubeArmor's gRPC address, HOST:PORT (default DefaultPolicyAddr).
	Addr string
	// LedgerPath, when set, is the file that remembers which policies KubeArmor may hold
	// because karmord sent them, across karmord's restarts.
	LedgerPath string
	// CallTimeout bounds each call (default 5 s).
	CallTimeout time.Duration
	// SettleDelay is how long after reaching a new KubeArmor the feed sends the whole set again:
	// KubeArmor restores the policies it saved while it already serves gRPC, so a restored old
	// copy can land after the feed's (default 3 s).
	SettleDelay time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries and between connection attempts.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	Registerer             prometheus.Registerer
}

func (o PolicyFeedOptions) withDefaults() PolicyFeedOptions {
	if o.Addr == "" {
		o.Addr = DefaultPolicyAddr
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.SettleDelay <= 0 {
		o.SettleDelay = DefaultSettleDelay
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

// CheckPolicyAddr reports whether addr is a HOST:PORT KubeArmor's gRPC API can be at.
func CheckPolicyAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%q: want HOST:PORT, e.g. %s", addr, DefaultPolicyAddr)
	}
	return nil
}

// PolicyState is what KubeArmor made of one policy.
type PolicyState struct {
	// Status is KubeArmor's answer (Applied, Invalid, NotEnabled, Failure, ...) or one of
	// PolicyPending, PolicyAway, PolicyNotSent.
	Status string
	// Detail says why, for PolicyNotSent and for the failures karmord knows the reason of.
	Detail string
}

// PolicyFeed keeps the policies KubeArmor enforces outside Kubernetes equal to the set karmord
// has in force, through KubeArmor's gRPC PolicyService.
//
// karmord calls Update with each set put in force (only validated, and when configured
// verified, sets are: a rejected artifact never reaches KubeArmor). The feed's goroutine (Run)
// sends what changed: each new or changed policy as ADDED, each dropped one as DELETED with
// the object KubeArmor holds it under. KubeArmor saves every policy it takes and restores them
// all when it starts, so the feed keeps a ledger of the policies KubeArmor may hold because of
// it, and whenever it reaches a KubeArmor anew (start, reconnection) it sends the whole set and
// deletes every ledger entry that is no longer in force: KubeArmor ends up with exactly the
// set in force, whatever it restored. KubeArmor keys policies by name alone, so of several
// policies with one name only the first in the set is sent; the others are reported.
type PolicyFeed struct {
	opts    PolicyFeedOptions
	log     *slog.Logger
	metrics *policyMetrics

	mu sync.Mutex
	// wanted is the set in force, in set order; complete is false while some source has never
	// loaded, when nothing is deleted from KubeArmor (it may be holding that source's
	// policies from before karmord started).
	wanted   []wantedPolicy
	byID     map[string]int // index in wanted
	complete bool
	hasSet   bool
	setGen   uint64 // the policy set's generation
	gen      uint64 // counts Updates: the session compares it with the last one it sent
	// answers holds KubeArmor's answer for each policy ID, with the object it answered.
	answers map[string]answer
	// lost is set when the connection to KubeArmor broke: the next pass sends everything.
	lost      bool
	connected bool
	// lastErr is the latest call failure, shown while KubeArmor is away.
	lastErr string

	wake chan struct{}
}

type wantedPolicy struct {
	id      string
	conv    ConvertedPolicy
	notSent string // why it is not sent; empty when it is
}

type answer struct {
	object json.RawMessage
	status string
	detail string
}

// NewPolicyFeed returns a feed; nothing is sent until Run, and nothing is deleted before the
// first Update.
func NewPolicyFeed(opts PolicyFeedOptions) *PolicyFeed {
	opts = opts.withDefaults()
	f := &PolicyFeed{
		opts:    opts,
		log:     opts.Logger.With("kubearmor_policy_addr", opts.Addr),
		answers: map[string]answer{},
		lost:    true,
		wake:    make(chan struct{}, 1),
	}
	f.metrics = newPolicyMetrics(opts.Registerer, f)
	return f
}

// Update records the set in force, of generation setGen (an older generation than one already
// recorded is ignored). complete is false while some policy source has not loaded yet: then the
// feed adds and changes policies but deletes none. It never blocks on KubeArmor.
func (f *PolicyFeed) Update(setGen uint64, policies []*match.Policy, complete bool) {
	wanted := make([]wantedPolicy, 0, len(policies))
	ids := map[string]int{}
	names := map[string]string{} // KubeArmor name -> the ID sent under it
	for _, p := range policies {
		id := p.ID()
		if _, dup := ids[id]; dup {
			continue // a duplicate definition: the first copy is the one sent
		}
		ids[id] = len(wanted)
		w := wantedPolicy{id: id}
		conv, err := ConvertPolicy(p.Spec)
		switch {
		case err != nil:
			w.notSent = err.Error()
		case names[conv.Name] != "":
			w.notSent = fmt.Sprintf("%v: KubeArmor keys policies by name alone, and %s has the name %s",
				ErrNotSendable, names[conv.Name], conv.Name)
		default:
			names[conv.Name] = id
			w.conv = conv
		}
		wanted = append(wanted, w)
	}
	f.mu.Lock()
	if f.hasSet && setGen < f.setGen {
		f.mu.Unlock()
		return
	}
	f.wanted, f.byID, f.complete, f.hasSet, f.setGen = wanted, ids, complete, true, setGen
	f.gen++
	f.mu.Unlock()
	f.signal()
}

func (f *PolicyFeed) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Connected reports whether KubeArmor's PolicyService is reachable.
func (f *PolicyFeed) Connected() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connected
}

// State tells what KubeArmor made of the policy with id (see match.Policy.ID) in the set last
// given to Update.
func (f *PolicyFeed) State(id string) PolicyState {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.byID[id]
	if !ok {
		return PolicyState{}
	}
	w := f.wanted[i]
	if w.notSent != "" {
		return PolicyState{Status: PolicyNotSent, Detail: w.notSent}
	}
	if !f.connected {
		detail := "KubeArmor's PolicyService at " + f.opts.Addr + " is not reachable"
		if f.lastErr != "" {
			detail += ": " + f.lastErr
		}
		return PolicyState{Status: PolicyAway, Detail: detail}
	}
	if a, ok := f.answers[id]; ok && bytes.Equal(a.object, w.conv.Object) {
		return PolicyState{Status: a.status, Detail: a.detail}
	}
	return PolicyState{Status: PolicyPending}
}

// Run keeps KubeArmor's policies equal to the set in force until ctx ends.
func (f *PolicyFeed) Run(ctx context.Context) {
	conn, err := grpc.NewClient(f.opts.Addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: f.opts.MinBackoff, Multiplier: 2, Jitter: 0.2, MaxDelay: f.opts.MaxBackoff},
			MinConnectTimeout: f.opts.CallTimeout,
		}),
		// An idle channel would drop its connection and look like a KubeArmor that went away.
		grpc.WithIdleTimeout(0))
	if err != nil {
		f.log.Error("KubeArmor's policy feed cannot start", "err", err)
		return
	}
	defer conn.Close()
	go f.watchConnection(ctx, conn)

	s := &policySession{f: f, client: kapb.NewPolicyServiceClient(conn), ledger: map[string]ledgerEntry{}}
	if f.opts.LedgerPath != "" {
		l, err := readLedger(f.opts.LedgerPath)
		if err != nil {
			// Without it, policies dropped while karmord was down may stay in KubeArmor.
			f.log.Error("policy ledger unreadable: policies karmord sent before may stay in KubeArmor", "path", f.opts.LedgerPath, "err", err)
		}
		s.ledger = l
	}
	backoffDelay := f.opts.MinBackoff
	var settle <-chan time.Time
	for {
		fresh, err := s.pass(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.failed(err)
			if !sleepWake(ctx, backoffDelay, f.wake) {
				return
			}
			backoffDelay = min(2*backoffDelay, f.opts.MaxBackoff)
			continue
		}
		backoffDelay = f.opts.MinBackoff
		if fresh {
			settle = time.After(f.opts.SettleDelay)
		}
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-settle:
			settle = nil
			s.resend = true
		}
	}
}

// watchConnection notices a KubeArmor that went away, even while nothing is being sent: the
// KubeArmor that comes back may be a new one, which gets the whole set.
func (f *PolicyFeed) watchConnection(ctx context.Context, conn *grpc.ClientConn) {
	for {
		state := conn.GetState()
		switch state {
		case connectivity.Idle:
			conn.Connect() // a broken connection rests idle until asked: keep watching for KubeArmor
		case connectivity.TransientFailure, connectivity.Shutdown:
			f.markLost()
		case connectivity.Ready:
			f.signal()
		}
		if !conn.WaitForStateChange(ctx, state) {
			return
		}
		if state == connectivity.Ready {
			f.markLost() // whatever it changed to, the KubeArmor behind it may be new
		}
	}
}

func (f *PolicyFeed) markLost() {
	f.mu.Lock()
	was := f.connected
	f.lost, f.connected = true, false
	f.mu.Unlock()
	f.metrics.connected.Set(0)
	if was {
		f.log.Warn("KubeArmor's PolicyService went away; the policies in force are sent again when it is back")
	}
	f.signal()
}

// policySession is the feed goroutine's state.
type policySession struct {
	f      *PolicyFeed
	client kapb.PolicyServiceClient
	// ledger holds the policies KubeArmor may hold because karmord sent them, with the object
	// last sent (persisted at LedgerPath).
	ledger map[string]ledgerEntry
	// sent holds what the KubeArmor reached now was sent of each name.
	sent      map[string]sentPolicy
	syncedGen uint64
	synced    bool
	// retry holds the ledger entries this KubeArmor did not delete: they are sent again at the
	// next whole resync, not at every pass.
	retry map[string]bool
	// unsettled is set from reaching a KubeArmor anew until a pass to it succeeds: the settle
	// pass follows that one.
	unsettled bool
	// resend asks for the whole set again (SettleDelay after reaching a new KubeArmor).
	resend bool
}

type sentPolicy struct {
	service string
	object  json.RawMessage
}

// pass brings KubeArmor to the set in force. fresh is true when it sent everything to a
// KubeArmor reached anew.
func (s *policySession) pass(ctx context.Context) (fresh bool, err error) {
	f := s.f
	f.mu.Lock()
	if !f.hasSet {
		f.mu.Unlock()
		return false, nil
	}
	lost := f.lost
	f.lost = false
	wanted, complete, gen := f.wanted, f.complete, f.gen
	f.mu.Unlock()
	if lost {
		s.unsettled = true
	}

	full := s.unsettled || s.resend || !s.synced
	if !full && gen == s.syncedGen {
		return false, nil
	}
	began := time.Now()
	if full {
		s.sent = map[string]sentPolicy{}
		s.retry = map[string]bool{}
		s.synced = false
		if lost {
			f.mu.Lock()
			clear(f.answers)
			f.mu.Unlock()
		}
	}

	// Write ahead: every name about to be sent is in the ledger before KubeArmor can save it.
	grew := false
	for _, w := range wanted {
		if w.notSent == "" {
			if _, ok := s.ledger[w.conv.Name]; !ok {
				s.ledger[w.conv.Name] = ledgerEntry{Service: w.conv.Service, Object: w.conv.Object}
				grew = true
			}
		}
	}
	if grew {
		s.saveLedger()
	}
	defer s.saveLedger()

	keep := map[string]bool{}
	var added, deleted int
	for _, w := range wanted {
		if w.notSent != "" {
			continue
		}
		keep[w.conv.Name] = true
		if prev, ok := s.sent[w.conv.Name]; ok && prev.service == w.conv.Service && bytes.Equal(prev.object, w.conv.Object) {
			continue
		}
		if e, ok := s.ledger[w.conv.Name]; ok && e.Service != w.conv.Service {
			// Same name, other kind: KubeArmor keeps the two apart in memory but saves them in
			// one file, so the old one goes first.
			if err := s.remove(ctx, w.conv.Name, e, !s.unsettled); err != nil {
				return false, err
			}
		}
		st, err := s.call(ctx, w.conv.Service, eventAdded, w.conv.Object)
		if err != nil {
			return false, err
		}
		added++
		ok := st == kapb.PolicyStatus_Applied || st == kapb.PolicyStatus_Modified
		s.sent[w.conv.Name] = sentPolicy{service: w.conv.Service, object: w.conv.Object}
		f.record(w.id, w.conv.Object, st)
		if ok {
			s.ledger[w.conv.Name] = ledgerEntry{Service: w.conv.Service, Object: w.conv.Object}
			continue
		}
		f.log.Warn("KubeArmor did not take a policy", "policy", w.id, "status", statusName(st))
		// An older copy KubeArmor may hold must not stay in force in its place.
		if e, ok := s.ledger[w.conv.Name]; ok && !bytes.Equal(e.Object, w.conv.Object) {
			if err := s.remove(ctx, w.conv.Name, e, !s.unsettled); err != nil {
				return false, err
			}
		} else {
			delete(s.ledger, w.conv.Name)
		}
	}
	if complete {
		for _, name := range ledgerNames(s.ledger) {
			if keep[name] || s.retry[name] {
				continue
			}
			if err := s.remove(ctx, name, s.ledger[name], !s.unsettled); err != nil {
				return false, err
			}
			deleted++
		}
	}

	fresh = s.unsettled
	s.synced, s.syncedGen, s.resend, s.unsettled = true, gen, false, false
	f.mu.Lock()
	was := f.connected
	f.connected, f.lastErr = true, ""
	f.mu.Unlock()
	f.metrics.connected.Set(1)
	if full {
		f.metrics.resyncs.Inc()
	}
	level := slog.LevelDebug
	if full || !was {
		level = slog.LevelInfo
	}
	f.log.Log(ctx, level, "KubeArmor's policies are the set in force", "whole_set", full, "sent", added, "deleted", deleted,
		"policies", len(keep), "took", time.Since(began).Round(time.Millisecond))
	return fresh, nil
}

// remove sends DELETED for name with the object KubeArmor holds it under and drops it from the
// ledger once KubeArmor no longer has it. NotExist is not always believed, and the entry stays
// for the next whole resync:
//   - right after reaching a KubeArmor anew (settled false), KubeArmor may not have restored the
//     policy yet; the settle pass deletes it again;
//   - a container policy selecting by kubearmor.io/container.name: KubeArmor answers NotExist to
//     its delete whenever it holds another endpoint the policy does not belong to, and then keeps
//     its saved copy, which it restores at its next start.
func (s *policySession) remove(ctx context.Context, name string, e ledgerEntry, settled bool) error {
	st, err := s.call(ctx, e.Service, eventDeleted, e.Object)
	if err != nil {
		return err
	}
	delete(s.sent, name)
	switch {
	case st == kapb.PolicyStatus_NotExist && (!settled || selectsByContainerName(e)):
		s.retry[name] = true
	case st == kapb.PolicyStatus_Deleted, st == kapb.PolicyStatus_NotExist, st == kapb.PolicyStatus_NotEnabled:
		// NotEnabled: KubeArmor takes no policies of that kind now, and holds none.
		delete(s.ledger, name)
	default:
		s.retry[name] = true
		s.f.log.Warn("KubeArmor did not delete a policy; it is tried again at the next whole resync", "name", name, "status", statusName(st))
	}
	return nil
}

// selectsByContainerName reports whether e is a container policy whose matchLabels name
// kubearmor.io/container.name.
func selectsByContainerName(e ledgerEntry) bool {
	if e.Service != ServiceContainer {
		return false
	}
	var obj struct {
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
		} `json:"spec"`
	}
	if json.Unmarshal(e.Object, &obj) != nil {
		return false
	}
	_, ok := obj.Spec.Selector.MatchLabels[LabelContainerName]
	return ok
}

// call sends one event and returns KubeArmor's answer.
func (s *policySession) call(ctx context.Context, service, typ string, object json.RawMessage) (kapb.PolicyStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, s.f.opts.CallTimeout)
	defer cancel()
	req := &kapb.Policy{Policy: policyEvent(typ, object)}
	var resp *kapb.Response
	var err error
	if service == ServiceHost {
		resp, err = s.client.HostPolicy(ctx, req)
	} else {
		resp, err = s.client.ContainerPolicy(ctx, req)
	}
	op := "added"
	if typ == eventDeleted {
		op = "deleted"
	}
	if err != nil {
		s.f.metrics.errors.WithLabelValues(status.Code(err).String()).Inc()
		return 0, fmt.Errorf("%s %s: %w", service, typ, err)
	}
	st := resp.GetStatus()
	s.f.metrics.sent.WithLabelValues(op, statusName(st)).Inc()
	return st, nil
}

// failed handles a pass that could not finish: a KubeArmor not answering may come back as a new
// one, so the next pass after an unreachable or timed-out call sends everything.
func (s *policySession) failed(err error) {
	f := s.f
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		f.markLost()
	}
	msg := err.Error()
	f.mu.Lock()
	repeated := msg == f.lastErr
	f.lastErr = msg
	f.mu.Unlock()
	if !repeated {
		f.log.Warn("cannot send policies to KubeArmor; retrying", "err", err)
	}
}

func (s *policySession) saveLedger() {
	if s.f.opts.LedgerPath == "" {
		return
	}
	if err := writeLedger(s.f.opts.LedgerPath, s.ledger); err != nil {
		s.f.log.Error("cannot save the policy ledger", "path", s.f.opts.LedgerPath, "err", err)
	}
}

// record keeps KubeArmor's answer for the policy id as it was sent.
func (f *PolicyFeed) record(id string, object json.RawMessage, st kapb.PolicyStatus) {
	a := answer{object: object, status: statusName(st)}
	switch st {
	case kapb.PolicyStatus_Invalid:
		a.detail = "KubeArmor refused it outside Kubernetes (see `karmor policy explain`: a container policy needs matchLabels, and kubearmor.io/container.name cannot be combined with other labels)"
	case kapb.PolicyStatus_NotEnabled:
		a.detail = "KubeArmor runs with policies of this kind disabled (-enableKubeArmorPolicy / -enableKubeArmorHostPolicy)"
	case kapb.PolicyStatus_Failure:
		a.detail = "KubeArmor failed to apply it (see its log)"
	}
	f.mu.Lock()
	f.answers[id] = a
	f.mu.Unlock()
}

// statusName is KubeArmor's name for st, Modified shown as Applied: both mean in force.
func statusName(st kapb.PolicyStatus) string {
	if st == kapb.PolicyStatus_Modified {
		return kapb.PolicyStatus_Applied.String()
	}
	return st.String()
}

// sleepWake waits d, or less when woken; false when ctx ended.
func sleepWake(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}
