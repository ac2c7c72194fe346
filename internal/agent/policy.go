package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/karmor/karmor/internal/containerinfo"
	"github.com/karmor/karmor/internal/dockerlabels"
	"github.com/karmor/karmor/internal/kubearmor"
	"github.com/karmor/karmor/internal/match"
	"github.com/karmor/karmor/internal/policysource"
	"github.com/karmor/karmor/internal/signing"
	"github.com/karmor/karmor/pkg/agentapi"
)

// Policies reach containers here. The policysource.Manager follows the sources and swaps in a
// compiled set with one atomic store; nothing here waits for it. Matching happens when karmord
// answers (list, get, explain, the watch stream), on a copy of the container taken under the
// table's lock and matched after the lock is released, so neither a set swap nor matching ever
// delays the hook's acknowledgement.

// newPolicyManager builds the sources of cfg and the Manager that combines them.
func newPolicyManager(cfg Config, onChange func(policysource.Change)) (*policysource.Manager, error) {
	var sources []policysource.Source
	for _, dir := range cfg.PolicyDirs {
		d, err := policysource.NewDir(policysource.DirOptions{Path: dir})
		if err != nil {
			return nil, fmt.Errorf("--policy-dir: %w", err)
		}
		sources = append(sources, d)
	}
	for ref := range cfg.PolicyRefTrust {
		if !slices.Contains(cfg.PolicyRefs, ref) {
			return nil, fmt.Errorf("--policy-ref-verify-key names %s, which no --policy-ref follows", ref)
		}
	}
	for _, ref := range cfg.PolicyRefs {
		trust := cfg.PolicyTrust
		if t, ok := cfg.PolicyRefTrust[ref]; ok {
			trust = t
		}
		o, err := policysource.NewOCI(policysource.OCIOptions{
			Trust:     trust,
			Ref:       ref,
			Transport: cfg.PolicyTransport,
			Interval:  cfg.PolicyInterval,
			CacheDir:  filepath.Join(cfg.StateDir, policyCacheDir),
			Logger:    cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("--policy-ref: %w", err)
		}
		sources = append(sources, o)
	}
	m, err := policysource.NewManager(policysource.Options{OnChange: onChange, Logger: cfg.Logger}, sources...)
	if err != nil {
		return nil, fmt.Errorf("policy sources: %w", err)
	}
	return m, nil
}

// policyChanged publishes a source's change (new content or a new failure) on the event stream
// and counts it. The Manager calls it on its own goroutine.
func (a *Agent) policyChanged(ch policysource.Change) {
	pc := &agentapi.PolicyChange{
		Time: time.Now().UTC(), Source: ch.Source, Kind: string(ch.Kind), Location: ch.Location, Digest: ch.Digest,
		Generation: ch.Generation, Policies: ch.Policies, Total: a.policies.Current().Match.Len(), FromCache: ch.FromCache,
	}
	result := "loaded"
	if ch.Err != nil {
		pc.Error = ch.Err.Error()
		result = "failed"
		if errors.Is(ch.Err, signing.ErrNotVerified) {
			result = "unverified"
		}
	}
	a.metrics.policyLoads.WithLabelValues(ch.Source, result).Inc()
	a.feedPolicies()
	a.mu.Lock()
	a.publish(&agentapi.Envelope{Type: agentapi.TypePolicyChange, PolicyChange: pc})
	a.mu.Unlock()
}

// feedPolicies hands the set in force to KubeArmor's policy feed, when there is one. Until every
// source has loaded once, the feed deletes nothing from KubeArmor: what KubeArmor restored may
// be the policies of a source karmord has not read yet.
func (a *Agent) feedPolicies() {
	if a.policyFeed == nil {
		return
	}
	complete := true
	for _, st := range a.policies.Status() {
		if st.LoadedAt.IsZero() {
			complete = false
		}
	}
	set := a.policies.Current()
	a.policyFeed.Update(set.Generation, set.Match.Policies(), complete)
}

// withPolicies adds to a container copy what karmord knows beyond the table (fillLabels), the IDs
// of the policies of set that apply and whether KubeArmor has it. Call it without holding a.mu.
func (a *Agent) withPolicies(c *agentapi.Container, set *policysource.Set) {
	a.fillLabels(c)
	c.Policies = policyIDs(set.Match.Match(c))
	if a.containerFeed != nil {
		c.KubeArmor = a.containerFeed.State(c.ID)
	}
}

// fillLabels fills in the labels karmord keeps outside the table: a pod's labels when the runtime
// passed none (Config.PodLabels), a Podman container's (Config.ContainerLabels). Call it without
// holding a.mu.
func (a *Agent) fillLabels(c *agentapi.Container) {
	a.fillPodLabels(c)
	a.fillPodmanLabels(c)
	a.fillDockerIdentity(c)
}

// fillDockerIdentity gives a Docker container the name, image and labels dockerd keeps in its own
// record, when a DockerContainer lookup is configured. Only containers that look like Docker's
// are asked about: no Kubernetes pod, not Podman's, and an ID of Docker's shape.
func (a *Agent) fillDockerIdentity(c *agentapi.Container) {
	if a.cfg.DockerContainer == nil || c.Pod != "" || c.Annotations[containerinfo.AnnotationManager] == containerinfo.ManagerLibpod ||
		(c.Name != "" && len(c.Labels) > 0) || !dockerlabels.IsContainerID(c.ID) {
		return
	}
	d, ok := a.cfg.DockerContainer(c.ID)
	if !ok {
		return
	}
	if c.Name == "" {
		c.Name = d.Name
	}
	if c.Image == "" {
		c.Image = d.Image
	}
	if len(c.Labels) == 0 && len(d.Labels) > 0 {
		c.Labels = maps.Clone(d.Labels)
	}
}

// fillPodmanLabels gives a Podman container without labels the labels Podman keeps in its own
// database, when a ContainerLabels lookup is configured.
func (a *Agent) fillPodmanLabels(c *agentapi.Container) {
	if a.cfg.ContainerLabels == nil || len(c.Labels) > 0 || containerinfo.RuntimeOf(c) != containerinfo.RuntimePodman {
		return
	}
	if labels, ok := a.cfg.ContainerLabels(c); ok && len(labels) > 0 {
		c.Labels = maps.Clone(labels)
	}
}

// fillPodLabels gives a Kubernetes container without labels its pod's labels, when a PodLabels
// lookup is configured. The table's maps are shared, so the labels are a new map.
func (a *Agent) fillPodLabels(c *agentapi.Container) {
	if a.cfg.PodLabels == nil || len(c.Labels) > 0 || c.Pod == "" || c.Namespace == "" {
		return
	}
	if labels, ok := a.cfg.PodLabels(c.Namespace, c.Pod); ok && len(labels) > 0 {
		c.Labels = maps.Clone(labels)
	}
}

func policyIDs(ps []*match.Policy) []string {
	if len(ps) == 0 {
		return nil
	}
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID()
	}
	return ids
}

// forWatcher returns the envelope to send a watcher: a container event gets the container's
// policies under the set in force when it is sent. The stream's envelopes are shared, so an
// event is copied before it is filled in.
func (a *Agent) forWatcher(env *agentapi.Envelope) *agentapi.Envelope {
	if env.Event == nil {
		return env
	}
	set := a.policies.Current()
	out := *env
	ev := *env.Event
	a.withPolicies(&ev.Container, set)
	out.Event = &ev
	out.PolicyGeneration = set.Generation
	return &out
}

// handlePolicyList answers the policy set in force, where each policy came from, and the state
// of every source.
func (a *Agent) handlePolicyList(context.Context, *session, *agentapi.Envelope) (*agentapi.Envelope, error) {
	set := a.policies.Current()
	statuses := a.policies.Status()
	state := &agentapi.PolicyState{
		Generation: set.Generation,
		BuiltAt:    set.BuiltAt.UTC(),
		Node:       a.nodeView(),
		Sources:    make([]agentapi.PolicySource, len(statuses)),
		Policies:   make([]agentapi.PolicyInfo, 0, set.Match.Len()),
		Duplicates: set.Duplicates,
	}
	// The status may already describe content newer than the set being shown (the Manager
	// records it just before publishing); then the set's build time is the closest truth.
	loadedAt := make([]time.Time, len(set.Sources))
	for i, st := range statuses {
		state.Sources[i] = sourceView(st)
		if i < len(set.Sources) {
			loadedAt[i] = set.BuiltAt.UTC()
			if st.Digest == set.Sources[i].Digest && !st.LoadedAt.IsZero() {
				loadedAt[i] = st.LoadedAt.UTC()
			}
		}
	}
	origins := documentOrigins(set)
	// Explaining the node gives every policy's selector in words; the verdicts are not used.
	selects := set.Match.ExplainNode(a.node()).Verdicts
	for i, p := range set.Match.Policies() {
		info := agentapi.PolicyInfo{ID: p.ID(), Kind: p.Kind, Namespace: p.Namespace, Name: p.Name, Scope: string(p.Scope()),
			File: p.File, Rules: len(p.Rules)}
		if i < len(selects) {
			info.Selects = selects[i].Selects
		}
		if src, ok := origins[docKey{p.File, p.Index}]; ok {
			info.Source = set.Sources[src].Source
			info.LoadedAt = loadedAt[src]
		}
		if a.policyFeed != nil {
			ka := a.policyFeed.State(info.ID)
			info.KubeArmor, info.KubeArmorDetail = ka.Status, ka.Detail
		}
		state.Policies = append(state.Policies, info)
	}
	return &agentapi.Envelope{Type: agentapi.TypePolicyState, PolicyState: state}, nil
}

type docKey struct {
	file  string
	index int
}

// documentOrigins maps each document of set to the index of the source it came from: the set
// holds every source's documents in source order, Sources[i].Policies of them each.
func documentOrigins(set *policysource.Set) map[docKey]int {
	origins := make(map[docKey]int, len(set.Documents))
	next := 0
	for i, v := range set.Sources {
		for j := 0; j < v.Policies && next < len(set.Documents); j++ {
			d := &set.Documents[next]
			origins[docKey{d.File, d.Index}] = i
			next++
		}
	}
	return origins
}

func sourceView(st policysource.Status) agentapi.PolicySource {
	return agentapi.PolicySource{
		Name: st.Name, Kind: string(st.Kind), Location: st.Location, Digest: st.Digest, Policies: st.Policies,
		LoadedAt: st.LoadedAt.UTC(), FromCache: st.FromCache, SignedBy: st.SignedBy, LastSuccess: st.LastSuccess.UTC(), Failing: st.Failing,
		LastError: st.LastError, LastErrorAt: st.LastErrorAt.UTC(),
	}
}

// handleExplain answers every policy's verdict on one container (by id, name or unique id
// prefix) or on the node.
func (a *Agent) handleExplain(_ context.Context, _ *session, req *agentapi.Envelope) (*agentapi.Envelope, error) {
	set := a.policies.Current()
	out := &agentapi.Explanation{Generation: set.Generation}
	var e match.Explanation
	if req.Node {
		n := a.nodeView()
		out.Node = &n
		e = set.Match.ExplainNode(a.node())
	} else {
		if req.ID == "" {
			return nil, fmt.Errorf("explain needs a container id, id prefix or name (or node)")
		}
		c, _, err := a.find(req.ID)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("karmord knows no live container with id, id prefix or name %q", truncate(req.ID, 64))
		}
		a.withPolicies(c, set)
		out.Container = c
		e = set.Match.Explain(c)
	}
	origins := documentOrigins(set)
	policies := set.Match.Policies()
	out.Verdicts = make([]agentapi.PolicyVerdict, len(e.Verdicts))
	for i, v := range e.Verdicts {
		out.Verdicts[i] = agentapi.PolicyVerdict{Policy: v.Policy, Kind: v.Kind, Name: v.Name, Namespace: v.Namespace, File: v.File,
			Selects: v.Selects, Applies: v.Applies, Reasons: v.Reasons}
		if i < len(policies) {
			if src, ok := origins[docKey{policies[i].File, policies[i].Index}]; ok {
				out.Verdicts[i].Source = set.Sources[src].Source
			}
			a.kubeArmorVerdict(&out.Verdicts[i], policies[i], out.Container)
		}
	}
	out.Rules = make([]agentapi.PolicyRule, len(e.Rules))
	for i, r := range e.Rules {
		out.Rules[i] = ruleView(r)
	}
	return &agentapi.Envelope{Type: agentapi.TypeExplanation, Explanation: out}, nil
}

// kubeArmorVerdict adds to v what KubeArmor makes of policy p, when karmord sends it policies:
// its state, and whether, matching as it does outside Kubernetes, it decides otherwise for the
// container c (the node when c is nil).
func (a *Agent) kubeArmorVerdict(v *agentapi.PolicyVerdict, p *match.Policy, c *agentapi.Container) {
	if a.policyFeed == nil {
		return
	}
	st := a.policyFeed.State(p.ID())
	v.KubeArmor = st.Status
	var ka kubearmor.KubeArmorVerdict
	switch {
	case st.Status == kubearmor.PolicyNotSent:
		ka = kubearmor.KubeArmorVerdict{Why: st.Detail}
	case c != nil:
		ka = kubearmor.ContainerVerdict(p.Spec, c)
	default:
		ka = kubearmor.NodeVerdict(p.Spec, a.cfg.NodeName)
	}
	switch {
	case ka.Applies && !v.Applies:
		v.KubeArmorDiffers = "KubeArmor applies it: " + ka.Why
	case !ka.Applies && v.Applies:
		v.KubeArmorDiffers = "KubeArmor does not apply it: " + ka.Why
	}
}

func ruleView(r match.Rule) agentapi.PolicyRule {
	v := agentapi.PolicyRule{Policy: r.Policy, Type: r.Type, Match: r.Match, Value: r.Value, Syscalls: r.Syscalls,
		AllowedArgs: r.AllowedArgs, OwnerOnly: r.OwnerOnly, ReadOnly: r.ReadOnly, Recursive: r.Recursive,
		Action: string(r.Action), Severity: r.Severity, Tags: r.Tags, Message: r.Message}
	for _, s := range r.FromSource {
		v.FromSource = append(v.FromSource, agentapi.RuleSource{Path: s.Path, Dir: s.Dir, Recursive: s.Recursive})
	}
	return v
}

// node is the node as the matcher sees it.
func (a *Agent) node() match.Node {
	return match.Node{Name: a.cfg.NodeName, Labels: a.cfg.NodeLabels}
}

func (a *Agent) nodeView() agentapi.Node {
	labels := maps.Clone(a.cfg.NodeLabels)
	if labels == nil {
		labels = map[string]string{}
	}
	return agentapi.Node{Name: a.cfg.NodeName, Labels: labels}
}
