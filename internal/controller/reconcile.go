package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/karmor/karmor/internal/policysource"
)

// maxMessage bounds the messages written to status and Events (a registry's error can quote
// what it served).
const maxMessage = 2048

// outcome is what one reconcile found, turned into status and Events.
type outcome struct {
	configErr  error
	crdErr     error
	desiredErr error
	applyErrs  []error
	pruneErrs  []error
	clashes    []string
	applied    []PolicyRef // in force: applied now or unchanged
	ran        bool        // the content in force was applied (not suspended, no config error)
	restored   []string    // objects put back after someone else changed them
	created    int
	updated    int
	deleted    int
}

// reconcile brings one PolicySource's objects in line with its artifact and returns when to
// look again (0: only when something changes).
func (c *Controller) reconcile(ctx context.Context, key string) (time.Duration, error) {
	obj, exists, err := c.sources.GetIndexer().GetByKey(key)
	if err != nil {
		return 0, err
	}
	if !exists {
		c.forget(key)
		return 0, nil
	}
	u := obj.(*unstructured.Unstructured).DeepCopy()
	src, specErr := parseSource(u)

	if u.GetDeletionTimestamp() != nil {
		return 0, c.finalize(ctx, src)
	}
	if specErr == nil {
		if err := c.syncFinalizer(ctx, src); err != nil {
			return 0, err
		}
	}

	out := &outcome{configErr: specErr}
	st := c.state(key)
	var next time.Duration
	switch {
	case specErr != nil:
		// The spec changes only with a new generation, which queues the source again.
	case src.spec.Suspend:
	default:
		next = c.follow(ctx, src, st, out)
	}
	if err := c.writeStatus(ctx, src, st, out); err != nil {
		return 0, err
	}
	return next, nil
}

func (c *Controller) state(key string) *state {
	c.statesMu.Lock()
	defer c.statesMu.Unlock()
	st := c.states[key]
	if st == nil {
		st = &state{}
		c.states[key] = st
	}
	return st
}

func (c *Controller) forget(key string) {
	c.statesMu.Lock()
	delete(c.states, key)
	c.statesMu.Unlock()
	ns, name, _ := strings.Cut(key, "/")
	c.metrics.ready.DeleteLabelValues(ns, name)
	c.metrics.checks.DeletePartialMatch(map[string]string{"namespace": ns, "name": name})
}

// follow checks the registry when due, and applies and prunes what is in force. It returns the
// time until the next check.
func (c *Controller) follow(ctx context.Context, src *source, st *state, out *outcome) time.Duration {
	in, err := loadInputs(ctx, c.kube, src, c.cfg.Transport)
	if err != nil {
		// A Secret may appear later; the controller cannot watch Secrets, so it looks again.
		out.configErr = err
		return jitter(src.interval)
	}
	if in.fingerprint != st.fingerprint || st.oci == nil {
		o, err := policysource.NewOCI(policysource.OCIOptions{
			Ref: src.spec.Ref, Transport: in.transport, Trust: in.trust,
			Interval: src.interval, CheckTimeout: src.timeout, Logger: c.log,
		})
		if err != nil {
			out.configErr = fmt.Errorf("spec.ref: %w", err)
			st.oci = nil
			return 0
		}
		*st = state{fingerprint: in.fingerprint, oci: o, trusted: in.trust != nil}
	}
	now := time.Now()
	if !now.Before(st.nextCheck) {
		res := st.oci.Check(ctx)
		if ctx.Err() != nil {
			return 0
		}
		st.lastErr, st.lastFailure = res.Err, res.Failure
		result := "unchanged"
		switch {
		case res.Err != nil:
			result = string(res.Failure)
		case res.Content != nil:
			result = "ok"
		}
		c.metrics.checks.WithLabelValues(src.obj.GetNamespace(), src.obj.GetName(), result).Inc()
		st.nextCheck = now.Add(jitter(src.interval))
	}
	if content := st.oci.Current(); content != nil {
		c.apply(ctx, src, content, out)
	}
	return max(time.Until(st.nextCheck), time.Millisecond)
}

// apply applies the content's objects that changed and prunes ours that left it.
func (c *Controller) apply(ctx context.Context, src *source, content *policysource.Content, out *outcome) {
	out.ran = true
	want, err := desiredObjects(content, src)
	if err != nil {
		out.desiredErr = err
		return
	}
	for _, d := range want {
		if err := c.ensureKind(ctx, d.kind); err != nil {
			out.crdErr = err
			return
		}
	}
	existing := c.uncachedObjects(ctx, want)
	keep := map[PolicyRef]bool{}
	for _, d := range want {
		keep[d.ref] = true
		if err := c.applyOne(ctx, src, d, existing, out); err != nil {
			out.applyErrs = append(out.applyErrs, err)
		}
	}
	if len(out.applyErrs) > 0 || !src.prune() {
		// Prune only after the whole good set is in: never leave a gap between old and new.
		return
	}
	for _, obj := range c.owned(src) {
		info, _ := kindByName(obj.GetKind())
		ref := PolicyRef{Kind: info.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
		if keep[ref] {
			continue
		}
		if err := c.deleteOne(ctx, info, obj); err != nil {
			out.pruneErrs = append(out.pruneErrs, fmt.Errorf("prune %s: %w", ref, err))
		} else {
			out.deleted++
		}
	}
}

// applyOne applies d unless the object in the API server already holds its content; an object
// of that name that is not this PolicySource's is a clash and left alone.
func (c *Controller) applyOne(ctx context.Context, src *source, d desired, existing map[PolicyRef]*unstructured.Unstructured, out *outcome) error {
	res := c.dyn.Resource(d.kind.GVR).Namespace(d.ref.Namespace)
	var live *unstructured.Unstructured
	if inf := c.kindInformer(d.kind.Kind); inf != nil {
		if o, ok, _ := inf.GetIndexer().GetByKey(cacheKey(d.ref)); ok {
			live = o.(*unstructured.Unstructured)
		}
	}
	if live == nil && existing != nil {
		live = existing[d.ref] // listed moments ago: absent means new
	} else if live == nil {
		// Not ours as far as the cache knows: either new, foreign, or ours and not cached yet.
		o, err := res.Get(ctx, d.ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return fmt.Errorf("get %s: %w", d.ref, err)
		default:
			live = o
		}
	}
	create := live == nil
	if !create {
		if !ownedBy(live, src) {
			out.clashes = append(out.clashes, d.ref.String()+clashOwner(live))
			return nil
		}
		if live.GetAnnotations()[AnnotationContentHash] == d.hash {
			if drifted(live, d.obj) {
				return c.restore(ctx, res, live, d, out)
			}
			out.applied = append(out.applied, d.ref)
			return nil
		}
	}
	// Force only over our own objects: it takes the fields someone else changed back.
	applied, err := res.Apply(ctx, d.ref.Name, d.obj, metav1.ApplyOptions{FieldManager: c.cfg.FieldManager, Force: !create})
	if err == nil && !create && drifted(applied, d.obj) {
		// An apply removes only the fields this manager's apply owns; one a restore (an update)
		// put back is owned by the update and would outlive the version that dropped it.
		c.log.Info("fields an earlier restore put back outlived the apply; the object is replaced", "policy", d.ref.String())
		err = c.replace(ctx, res, applied, d)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("apply %s: %w: install KubeArmor's CRDs", d.ref, err)
		}
		return fmt.Errorf("apply %s: %w", d.ref, err)
	}
	op := "update"
	if create {
		op = "create"
		out.created++
	} else {
		out.updated++
	}
	c.metrics.writes.WithLabelValues(op, d.kind.Kind).Inc()
	out.applied = append(out.applied, d.ref)
	return nil
}

// bulkLookup is the number of objects missing from the caches above which one list per kind
// and namespace finds out which exist, instead of a GET each: a first apply of 1,000 policies
// would otherwise cost twice the requests, within the client's rate limit.
const bulkLookup = 16

// uncachedObjects lists, when many desired objects are missing from our caches, the objects of
// their kinds and namespaces that exist (ours or not), keyed by PolicyRef. It returns nil when
// there are few (applyOne GETs each) or when a list fails (the GETs say why, object by object).
func (c *Controller) uncachedObjects(ctx context.Context, want []desired) map[PolicyRef]*unstructured.Unstructured {
	type scope struct {
		kind      kindInfo
		namespace string
	}
	missing := map[scope]bool{}
	n := 0
	for _, d := range want {
		if inf := c.kindInformer(d.kind.Kind); inf != nil {
			if _, ok, _ := inf.GetIndexer().GetByKey(cacheKey(d.ref)); ok {
				continue
			}
		}
		missing[scope{d.kind, d.ref.Namespace}] = true
		n++
	}
	if n <= bulkLookup {
		return nil
	}
	found := map[PolicyRef]*unstructured.Unstructured{}
	for sc := range missing {
		opts := metav1.ListOptions{Limit: 500}
		for {
			list, err := c.dyn.Resource(sc.kind.GVR).Namespace(sc.namespace).List(ctx, opts)
			if err != nil {
				return nil
			}
			for i := range list.Items {
				o := &list.Items[i]
				found[PolicyRef{Kind: sc.kind.Kind, Namespace: o.GetNamespace(), Name: o.GetName()}] = o
			}
			if opts.Continue = list.GetContinue(); opts.Continue == "" {
				break
			}
		}
	}
	return found
}

// drifted reports whether someone changed what KubeArmor enforces in one of our objects, or
// our labels and annotations, while leaving its content-hash annotation as we wrote it. Labels
// and annotations that others add are theirs to keep: only the spec and our own keys count,
// so an addition never makes the controller write at every reconcile.
func drifted(live, want *unstructured.Unstructured) bool {
	liveSpec, err1 := json.Marshal(live.Object["spec"])
	wantSpec, err2 := json.Marshal(want.Object["spec"])
	if err1 != nil || err2 != nil || !bytes.Equal(liveSpec, wantSpec) {
		return true
	}
	for k, v := range want.GetLabels() {
		if live.GetLabels()[k] != v {
			return true
		}
	}
	for k, v := range want.GetAnnotations() {
		if k != AnnotationAppliedFrom && live.GetAnnotations()[k] != v {
			return true
		}
	}
	return false
}

// restore puts a drifted object back as the artifact holds it. It replaces the whole object
// (an update, not an apply): fields someone added to the spec are owned by their manager, and
// an apply would leave them in force.
func (c *Controller) restore(ctx context.Context, res dynamic.ResourceInterface, live *unstructured.Unstructured, d desired, out *outcome) error {
	if err := c.replace(ctx, res, live, d); err != nil {
		return fmt.Errorf("restore %s, changed by someone else: %w", d.ref, err)
	}
	c.log.Warn("an applied policy was changed behind the controller's back; it was restored as the artifact holds it",
		"policy", d.ref.String(), "policysource", d.obj.GetAnnotations()[AnnotationSource])
	c.metrics.writes.WithLabelValues("restore", d.kind.Kind).Inc()
	out.restored = append(out.restored, d.ref.String())
	out.applied = append(out.applied, d.ref)
	return nil
}

// replace writes d over live whole, keeping the version live's content came from.
func (c *Controller) replace(ctx context.Context, res dynamic.ResourceInterface, live *unstructured.Unstructured, d desired) error {
	obj := d.obj.DeepCopy()
	obj.SetResourceVersion(live.GetResourceVersion())
	// The version it came from is the one it was last applied from, not the one in force now.
	annotations := obj.GetAnnotations()
	if from := live.GetAnnotations()[AnnotationAppliedFrom]; from != "" {
		annotations[AnnotationAppliedFrom] = from
	}
	obj.SetAnnotations(annotations)
	_, err := res.Update(ctx, obj, metav1.UpdateOptions{FieldManager: c.cfg.FieldManager})
	return err
}

func (c *Controller) deleteOne(ctx context.Context, info kindInfo, obj *unstructured.Unstructured) error {
	uid := obj.GetUID()
	err := c.dyn.Resource(info.GVR).Namespace(obj.GetNamespace()).Delete(ctx, obj.GetName(), metav1.DeleteOptions{
		// The object we saw, not one made since under the same name.
		Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.metrics.writes.WithLabelValues("delete", info.Kind).Inc()
	return nil
}

func cacheKey(r PolicyRef) string {
	if r.Namespace == "" {
		return r.Name
	}
	return r.Namespace + "/" + r.Name
}

func ownedBy(o *unstructured.Unstructured, src *source) bool {
	l := o.GetLabels()
	return l[LabelManagedBy] == ManagedByValue && l[LabelSourceNamespace] == src.obj.GetNamespace() && l[LabelSourceName] == src.obj.GetName()
}

func clashOwner(o *unstructured.Unstructured) string {
	if s := o.GetAnnotations()[AnnotationSource]; s != "" && o.GetLabels()[LabelManagedBy] == ManagedByValue {
		return " (PolicySource " + s + ")"
	}
	return " (not created by karmor-controller)"
}

// owned lists this PolicySource's objects from the caches.
func (c *Controller) owned(src *source) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, k := range kubeArmorKinds {
		inf := c.kindInformer(k.Kind)
		if inf == nil {
			continue
		}
		for _, o := range inf.GetStore().List() {
			u := o.(*unstructured.Unstructured)
			if ownedBy(u, src) {
				if u.GetKind() == "" {
					u = u.DeepCopy()
					u.SetKind(k.Kind)
				}
				out = append(out, u)
			}
		}
	}
	return out
}

// syncFinalizer adds the prune finalizer when spec.prune is on and removes it when off.
func (c *Controller) syncFinalizer(ctx context.Context, src *source) error {
	has := slices.Contains(src.obj.GetFinalizers(), Finalizer)
	if has == src.prune() {
		return nil
	}
	fin := slices.DeleteFunc(slices.Clone(src.obj.GetFinalizers()), func(f string) bool { return f == Finalizer })
	if src.prune() {
		fin = append(fin, Finalizer)
	}
	src.obj.SetFinalizers(fin)
	updated, err := c.dyn.Resource(PolicySourceGVR).Namespace(src.obj.GetNamespace()).Update(ctx, src.obj, metav1.UpdateOptions{FieldManager: c.cfg.FieldManager})
	if err != nil {
		return fmt.Errorf("finalizer %s: %w", Finalizer, err)
	}
	src.obj = updated
	return nil
}

// finalize deletes a deleted PolicySource's objects, then lets it go.
func (c *Controller) finalize(ctx context.Context, src *source) error {
	if !slices.Contains(src.obj.GetFinalizers(), Finalizer) {
		c.forget(src.key())
		return nil
	}
	// Listed from the API server, not the caches: an object applied a moment ago and not yet
	// cached would otherwise outlive its PolicySource.
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedByValue,
		LabelSourceNamespace: src.obj.GetNamespace(), LabelSourceName: src.obj.GetName()}).String()
	var errs []error
	deleted := 0
	for _, k := range kubeArmorKinds {
		list, err := c.dyn.Resource(k.GVR).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if apierrors.IsNotFound(err) {
			continue // the kind is not served: no objects of ours
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s: %w", k.Kind, err))
			continue
		}
		for i := range list.Items {
			obj := &list.Items[i]
			if err := c.deleteOne(ctx, k, obj); err != nil {
				errs = append(errs, fmt.Errorf("prune %s/%s: %w", k.Kind, obj.GetName(), err))
			} else {
				deleted++
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.event(src, corev1.EventTypeWarning, ReasonPruneFailed, err.Error())
		return err
	}
	src.obj.SetFinalizers(slices.DeleteFunc(slices.Clone(src.obj.GetFinalizers()), func(f string) bool { return f == Finalizer }))
	if _, err := c.dyn.Resource(PolicySourceGVR).Namespace(src.obj.GetNamespace()).Update(ctx, src.obj, metav1.UpdateOptions{FieldManager: c.cfg.FieldManager}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove finalizer %s: %w", Finalizer, err)
	}
	c.log.Info("PolicySource deleted: its objects were pruned", "policysource", src.key(), "deleted", deleted)
	c.forget(src.key())
	return nil
}

// writeStatus computes the status from the outcome and writes it only when it changed, and
// sends an Event for what changed.
func (c *Controller) writeStatus(ctx context.Context, src *source, st *state, out *outcome) error {
	old := src.status
	s := Status{
		ObservedGeneration: src.obj.GetGeneration(),
		Conditions:         slices.Clone(old.Conditions),
		// What is in force stays what the API server holds until a good set replaces it.
		Digest: old.Digest, Ref: old.Ref, SignedBy: old.SignedBy, PolicyCount: old.PolicyCount, Policies: old.Policies,
	}
	gen := src.obj.GetGeneration()
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: clip(msg), ObservedGeneration: gen})
	}
	var content *policysource.Content
	if st.oci != nil {
		content = st.oci.Current()
	}
	inForce := out.ran && content != nil && out.desiredErr == nil && out.crdErr == nil && len(out.applyErrs) == 0
	if inForce {
		s.Digest, s.Ref, s.SignedBy = content.Digest, content.Location, content.SignedBy
		s.Policies = slices.Clone(out.applied)
		s.PolicyCount = len(s.Policies)
	}

	// Verified and Valid describe the latest version seen; Ready, whether what the artifact
	// asks for is in the cluster.
	switch {
	case out.configErr != nil || src.spec.Suspend:
	case st.lastFailure == policysource.FailureVerify:
		set(CondVerified, metav1.ConditionFalse, ReasonVerificationFailed, st.lastErr.Error()+"; push a signature by a trusted key or identity, or fix spec.verify")
	case !st.trusted:
		set(CondVerified, metav1.ConditionTrue, ReasonNotConfigured, "spec.verify is not set: versions are applied without checking a signature")
	case content != nil:
		set(CondVerified, metav1.ConditionTrue, ReasonVerified, "signed by "+content.SignedBy)
	}
	switch {
	case out.configErr != nil || src.spec.Suspend:
	case st.lastFailure == policysource.FailureInvalid:
		set(CondValid, metav1.ConditionFalse, ReasonInvalid, st.lastErr.Error()+"; fix the policies (karmor policy validate) and push again")
	case out.desiredErr != nil:
		set(CondValid, metav1.ConditionFalse, ReasonInvalid, out.desiredErr.Error())
	case content != nil:
		set(CondValid, metav1.ConditionTrue, ReasonValid, fmt.Sprintf("%d policies in %s are valid", len(content.Documents), content.Location))
	}

	reason, msg := ReasonApplied, ""
	switch {
	case out.configErr != nil:
		reason, msg = ReasonConfigError, out.configErr.Error()
	case src.spec.Suspend:
		reason, msg = ReasonSuspended, "spec.suspend is true: the registry is not checked and the objects in force stay as they are"
	case out.crdErr != nil:
		reason, msg = ReasonCRDMissing, out.crdErr.Error()
	case out.desiredErr != nil:
		reason, msg = ReasonInvalid, out.desiredErr.Error()
	case len(out.applyErrs) > 0:
		reason, msg = ReasonApplyFailed, errors.Join(out.applyErrs...).Error()
	case st.lastErr != nil:
		reason = string(st.lastFailure)
		msg = st.lastErr.Error()
		if content == nil && old.Digest == "" {
			msg += "; nothing has been applied yet"
		} else {
			msg += "; the objects applied before stay in force"
		}
	case len(out.clashes) > 0:
		reason, msg = ReasonNameClash, "objects of these names exist and are not this PolicySource's, so they were left alone: "+
			strings.Join(out.clashes, ", ")+"; rename the policies in the artifact or remove the other objects"
	case len(out.pruneErrs) > 0:
		reason, msg = ReasonPruneFailed, errors.Join(out.pruneErrs...).Error()
	case content == nil:
		reason, msg = ReasonProgressing, "the registry has not been checked yet"
	}
	if reason == ReasonApplied {
		set(CondReady, metav1.ConditionTrue, reason, fmt.Sprintf("%d policies from %s in force", s.PolicyCount, s.Ref))
		s.LastError = ""
	} else {
		status := metav1.ConditionFalse
		if reason == ReasonProgressing {
			status = metav1.ConditionUnknown
		}
		set(CondReady, status, reason, msg)
		if reason != ReasonProgressing && reason != ReasonSuspended {
			s.LastError = clip(msg)
		}
	}
	ready := 0.0
	if meta.IsStatusConditionTrue(s.Conditions, CondReady) {
		ready = 1
	}
	c.metrics.ready.WithLabelValues(src.obj.GetNamespace(), src.obj.GetName()).Set(ready)

	if n := out.created + out.updated + out.deleted; n > 0 {
		c.event(src, corev1.EventTypeNormal, ReasonApplied, fmt.Sprintf("%s: created %d, updated %d, pruned %d objects", s.Ref, out.created, out.updated, out.deleted))
	}
	if len(out.restored) > 0 {
		c.event(src, corev1.EventTypeWarning, ReasonDriftCorrected, "restored as "+s.Ref+" holds them, after a change by someone else: "+strings.Join(out.restored, ", "))
	}
	if equality.Semantic.DeepEqual(old, s) {
		return nil
	}
	if reason != ReasonApplied && reason != ReasonProgressing && reason != ReasonSuspended {
		if prev := meta.FindStatusCondition(old.Conditions, CondReady); prev == nil || prev.Message != clip(msg) {
			c.event(src, corev1.EventTypeWarning, reason, msg)
		}
	}
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&s)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	obj := src.obj.DeepCopy()
	obj.Object["status"] = raw
	if _, err := c.dyn.Resource(PolicySourceGVR).Namespace(obj.GetNamespace()).UpdateStatus(ctx, obj, metav1.UpdateOptions{FieldManager: c.cfg.FieldManager}); err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}

func (c *Controller) event(src *source, typ, reason, msg string) {
	c.recorder.Event(src.obj, typ, reason, clip(msg))
}

func clip(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage] + "…"
}
