package policysource

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/karmor/karmor/internal/match"
	"github.com/karmor/karmor/pkg/policy"
)

// Set is the combined content of every source at one moment. It is immutable: share it freely.
type Set struct {
	// Generation counts the sets a Manager published, from 1 (the set built by Start).
	Generation uint64
	BuiltAt    time.Time
	// Match is the compiled, indexed form of Documents, for matching containers and the node.
	Match *match.Set
	// Documents are every source's valid documents, in source order.
	Documents []policy.Document
	// Sources says which version of each source the set holds, in source order.
	Sources []Version
	// Duplicates lists the IDs (see match.Policy.ID) of policies defined more than once, for
	// example by two sources. All copies are kept and matched.
	Duplicates []string
}

// Version is the content of one source a Set holds.
type Version struct {
	Source   string `json:"source"`
	Kind     Kind   `json:"kind"`
	Location string `json:"location"`
	Digest   string `json:"digest,omitempty"`
	Policies int    `json:"policies"`
}

// Change reports a new set in force or a failed check, for karmord's event stream.
type Change struct {
	Source   string
	Kind     Kind
	Location string
	Digest   string
	// Generation is the generation of the set in force after the change.
	Generation uint64
	// Policies is the number of the source's policies in force.
	Policies  int
	FromCache bool
	// Err is set when a check failed: the source's previous content stays in force. A failure
	// is reported once, not again while it repeats unchanged.
	Err error
}

// Status describes one source, for `karmor policy sources` and metrics.
type Status struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Location is the directory, or REF@DIGEST of the content in force (REF before any).
	Location string `json:"location"`
	Digest   string `json:"digest,omitempty"`
	Policies int    `json:"policies"`
	// LoadedAt is when the content in force was put in force.
	LoadedAt  time.Time `json:"loadedAt,omitzero"`
	FromCache bool      `json:"fromCache,omitempty"`
	// SignedBy is who signed the content in force, when the source verifies signatures.
	SignedBy string `json:"signedBy,omitempty"`
	// LastSuccess is when a check last succeeded (whether or not it found new content).
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// Failing is true when the most recent check failed.
	Failing     bool      `json:"failing"`
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// Options configures a Manager.
type Options struct {
	// OnChange, when set, is called after each new set and each new failure, on the Manager's
	// own goroutine: it must return quickly.
	OnChange func(Change)
	// Logger receives swaps and failures; nil means slog.Default().
	Logger *slog.Logger
}

// Manager owns several sources and publishes their combined Set.
type Manager struct {
	opts    Options
	log     *slog.Logger
	sources []Source

	current atomic.Pointer[Set]

	mu     sync.Mutex // guards states, for Status
	states []state

	results chan indexedResult
	wg      sync.WaitGroup
	started bool
}

// state is what the Manager knows of one source; content is what is in force.
type state struct {
	content *Content
	status  Status
}

type indexedResult struct {
	source int
	Result
}

// NewManager returns a Manager of sources; names must be unique. Nothing runs before Start.
func NewManager(opts Options, sources ...Source) (*Manager, error) {
	m := &Manager{opts: opts, log: opts.Logger, sources: sources, results: make(chan indexedResult)}
	if m.log == nil {
		m.log = slog.Default()
	}
	seen := map[string]bool{}
	for _, s := range sources {
		if seen[s.Name()] {
			return nil, fmt.Errorf("policy source %s is given twice", s.Name())
		}
		seen[s.Name()] = true
		m.states = append(m.states, state{status: Status{Name: s.Name(), Kind: s.Kind(), Location: s.Location()}})
	}
	m.current.Store(&Set{Match: match.NewSet(nil)})
	return m, nil
}

// Current returns the set in force. It never blocks and never returns nil (before Start, an
// empty set of generation 0).
func (m *Manager) Current() *Set { return m.current.Load() }

// Status returns the status of every source, in source order.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, len(m.states))
	for i, s := range m.states {
		out[i] = s.status
	}
	return out
}

// Start loads what every source has locally (a directory's files, an OCI cache) and puts it in
// force before returning, so policies are enforced before the first network round trip; then
// it follows the sources until ctx ends. Call it once; Wait waits for its goroutines to end.
// OnChange is called from Start for what it loaded, then from the Manager's goroutine.
func (m *Manager) Start(ctx context.Context) {
	if m.started {
		panic("policysource: Manager.Start called twice")
	}
	m.started = true
	var loaded []int
	for i, s := range m.sources {
		content, err := s.Load(ctx)
		if m.apply(i, Result{Content: content, Err: err, At: time.Now()}) {
			loaded = append(loaded, i)
		}
	}
	m.publish(loaded...)

	var followers sync.WaitGroup
	for i, s := range m.sources {
		followers.Go(func() {
			s.Follow(ctx, func(r Result) {
				select {
				case m.results <- indexedResult{i, r}:
				case <-ctx.Done():
				}
			})
		})
	}
	followersDone := make(chan struct{})
	go func() { followers.Wait(); close(followersDone) }()
	m.wg.Go(func() {
		for {
			select {
			case r := <-m.results:
				if m.apply(r.source, r.Result) {
					m.publish(r.source)
				}
			case <-followersDone:
				return
			}
		}
	})
}

// Wait returns when every goroutine Start began has ended (after its ctx ended).
func (m *Manager) Wait() { m.wg.Wait() }

// apply records a check's result and reports whether the source's content in force changed.
// Start, then the Manager's goroutine, call it: never two at once.
func (m *Manager) apply(i int, r Result) (changed bool) {
	m.mu.Lock()
	st := &m.states[i]
	s := &st.status
	var failure *Change
	switch {
	case r.Err != nil:
		repeated := s.Failing && s.LastError == r.Err.Error()
		s.Failing, s.LastError, s.LastErrorAt = true, r.Err.Error(), r.At
		if !repeated {
			failure = &Change{Source: s.Name, Kind: s.Kind, Location: s.Location, Digest: s.Digest,
				Policies: s.Policies, FromCache: s.FromCache, Err: r.Err}
		}
	case r.Content == nil:
		s.Failing, s.LastSuccess = false, r.At
	case st.content != nil && r.Content.Digest == st.content.Digest:
		// The same version, confirmed (e.g. the registry still serves what the cache held).
		st.content = r.Content
		s.Failing, s.Location, s.FromCache, s.SignedBy = false, r.Content.Location, r.Content.FromCache, r.Content.SignedBy
		if !r.Content.FromCache {
			s.LastSuccess = r.At
		}
	default:
		st.content = r.Content
		s.Location, s.Digest, s.Policies = r.Content.Location, r.Content.Digest, len(r.Content.Documents)
		s.LoadedAt, s.FromCache, s.Failing, s.SignedBy = r.At, r.Content.FromCache, false, r.Content.SignedBy
		if !r.Content.FromCache {
			s.LastSuccess = r.At
		}
		changed = true
	}
	m.mu.Unlock()

	if failure != nil {
		failure.Generation = m.Current().Generation
		m.log.Warn("policy source check failed; its last good policies stay in force",
			"source", failure.Source, "location", failure.Location, "error", failure.Err)
		m.notify(*failure)
	}
	return changed
}

// publish builds the combined set from every source's content in force, puts it in force with
// one atomic store, and reports the sources whose content changed.
func (m *Manager) publish(changed ...int) {
	m.mu.Lock()
	set := &Set{Generation: m.Current().Generation + 1, BuiltAt: time.Now()}
	for _, st := range m.states {
		v := Version{Source: st.status.Name, Kind: st.status.Kind, Location: st.status.Location}
		if st.content != nil {
			v.Digest, v.Policies = st.content.Digest, len(st.content.Documents)
			set.Documents = append(set.Documents, st.content.Documents...)
		}
		set.Sources = append(set.Sources, v)
	}
	var notices []Change
	for _, i := range changed {
		s := m.states[i].status
		notices = append(notices, Change{Source: s.Name, Kind: s.Kind, Location: s.Location, Digest: s.Digest,
			Generation: set.Generation, Policies: s.Policies, FromCache: s.FromCache})
	}
	m.mu.Unlock()

	set.Match = match.NewSet(set.Documents)
	set.Duplicates = duplicates(set.Match)
	m.current.Store(set)
	for _, n := range notices {
		m.log.Info("policies in force", "source", n.Source, "location", n.Location, "policies", n.Policies,
			"fromCache", n.FromCache, "generation", n.Generation, "total", set.Match.Len())
		m.notify(n)
	}
	if len(set.Duplicates) > 0 {
		m.log.Warn("policies defined more than once; every copy applies", "policies", set.Duplicates)
	}
}

func (m *Manager) notify(c Change) {
	if m.opts.OnChange != nil {
		m.opts.OnChange(c)
	}
}

func duplicates(s *match.Set) []string {
	seen := map[string]int{}
	var dups []string
	for _, p := range s.Policies() {
		id := p.ID()
		if seen[id]++; seen[id] == 2 {
			dups = append(dups, id)
		}
	}
	return dups
}
