package controller

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The labels and annotations on every object the controller applies (docs: the contract of
// issue 13). The labels select them; the annotations explain them.
const (
	LabelManagedBy       = "app.kubernetes.io/managed-by"
	ManagedByValue       = "karmor-controller"
	LabelSourceNamespace = "karmor.io/source-namespace"
	LabelSourceName      = "karmor.io/source-name"

	AnnotationSource      = "karmor.io/source"
	AnnotationAppliedFrom = "karmor.io/applied-from"
	AnnotationContentHash = "karmor.io/content-hash"

	// Finalizer holds a PolicySource with prune on until its objects are deleted.
	Finalizer = "karmor.io/prune"

	// DefaultFieldManager is the server-side apply field manager.
	DefaultFieldManager = "karmor-controller"
)

// PolicySourceGVR is the resource of our CRD.
var PolicySourceGVR = schema.GroupVersionResource{Group: "karmor.io", Version: "v1alpha1", Resource: "policysources"}

// KubeArmor's kinds, their resources and scopes (../shared/kubearmor/deployments/CRD).
const kubeArmorGroup = "security.kubearmor.com"

type kindInfo struct {
	Kind       string
	GVR        schema.GroupVersionResource
	Namespaced bool
}

var kubeArmorKinds = []kindInfo{
	{"KubeArmorPolicy", schema.GroupVersionResource{Group: kubeArmorGroup, Version: "v1", Resource: "kubearmorpolicies"}, true},
	{"KubeArmorClusterPolicy", schema.GroupVersionResource{Group: kubeArmorGroup, Version: "v1", Resource: "kubearmorclusterpolicies"}, false},
	{"KubeArmorHostPolicy", schema.GroupVersionResource{Group: kubeArmorGroup, Version: "v1", Resource: "kubearmorhostpolicies"}, false},
	{"KubeArmorNetworkPolicy", schema.GroupVersionResource{Group: kubeArmorGroup, Version: "v1", Resource: "kubearmornetworkpolicies"}, false},
}

func kindByName(kind string) (kindInfo, bool) {
	for _, k := range kubeArmorKinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return kindInfo{}, false
}

// Spec is a PolicySource's spec (the CRD's schema holds the documentation).
type Spec struct {
	Ref             string    `json:"ref"`
	Interval        string    `json:"interval,omitempty"`
	Timeout         string    `json:"timeout,omitempty"`
	Insecure        bool      `json:"insecure,omitempty"`
	SecretRef       *LocalRef `json:"secretRef,omitempty"`
	TargetNamespace string    `json:"targetNamespace,omitempty"`
	Verify          *Verify   `json:"verify,omitempty"`
	Prune           *bool     `json:"prune,omitempty"`
	Suspend         bool      `json:"suspend,omitempty"`
}

// LocalRef names an object in the PolicySource's namespace.
type LocalRef struct {
	Name string `json:"name"`
}

// Verify is spec.verify.
type Verify struct {
	KeysSecretRef                    *LocalRef  `json:"keysSecretRef,omitempty"`
	Identities                       []Identity `json:"identities,omitempty"`
	TrustedRootConfigMapRef          *LocalRef  `json:"trustedRootConfigMapRef,omitempty"`
	RequireTlog                      bool       `json:"requireTlog,omitempty"`
	NotationCertificatesConfigMapRef *LocalRef  `json:"notationCertificatesConfigMapRef,omitempty"`
	NotationIdentities               []string   `json:"notationIdentities,omitempty"`
}

// Identity is a keyless signer.
type Identity struct {
	Issuer        string `json:"issuer,omitempty"`
	IssuerRegExp  string `json:"issuerRegExp,omitempty"`
	Subject       string `json:"subject,omitempty"`
	SubjectRegExp string `json:"subjectRegExp,omitempty"`
}

// Status is a PolicySource's status. It holds no time that changes at every check, so an
// unchanged check (or a restart) writes nothing.
type Status struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
	Digest             string             `json:"digest,omitempty"`
	Ref                string             `json:"ref,omitempty"`
	SignedBy           string             `json:"signedBy,omitempty"`
	PolicyCount        int                `json:"policyCount"`
	Policies           []PolicyRef        `json:"policies,omitempty"`
	LastError          string             `json:"lastError,omitempty"`
}

// PolicyRef names one applied object.
type PolicyRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (p PolicyRef) String() string {
	if p.Namespace == "" {
		return p.Kind + "/" + p.Name
	}
	return p.Kind + "/" + p.Namespace + "/" + p.Name
}

// Condition types and reasons.
const (
	CondReady    = "Ready"
	CondVerified = "Verified"
	CondValid    = "Valid"

	ReasonApplied            = "Applied"
	ReasonVerified           = "Verified"
	ReasonNotConfigured      = "VerificationNotConfigured"
	ReasonVerificationFailed = "VerificationFailed"
	ReasonValid              = "Valid"
	ReasonInvalid            = "Invalid"
	ReasonFetchFailed        = "FetchFailed"
	ReasonNameClash          = "NameClash"
	ReasonDriftCorrected     = "DriftCorrected"
	ReasonApplyFailed        = "ApplyFailed"
	ReasonPruneFailed        = "PruneFailed"
	ReasonConfigError        = "ConfigError"
	ReasonCRDMissing         = "KubeArmorCRDMissing"
	ReasonSuspended          = "Suspended"
	ReasonProgressing        = "Progressing"
)

// source is a PolicySource as read from the API server.
type source struct {
	obj    *unstructured.Unstructured
	spec   Spec
	status Status

	interval, timeout time.Duration
}

// Minimums that keep a typo (interval: 1ms) from hammering the registry.
const (
	minInterval = time.Second
	minTimeout  = time.Second
)

func parseSource(obj *unstructured.Unstructured) (*source, error) {
	s := &source{obj: obj}
	if raw, ok := obj.Object["spec"].(map[string]any); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &s.spec); err != nil {
			return s, fmt.Errorf("spec: %w", err)
		}
	}
	if raw, ok := obj.Object["status"].(map[string]any); ok {
		// A status we cannot read is rewritten whole; not an error of the user's.
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &s.status)
	}
	var err error
	if s.interval, err = duration(s.spec.Interval, time.Minute, minInterval); err != nil {
		return s, fmt.Errorf("spec.interval: %w", err)
	}
	if s.timeout, err = duration(s.spec.Timeout, 2*time.Minute, minTimeout); err != nil {
		return s, fmt.Errorf("spec.timeout: %w", err)
	}
	if s.spec.Ref == "" {
		return s, fmt.Errorf("spec.ref is empty: set it to the policy artifact's reference")
	}
	return s, nil
}

func duration(text string, def, lowest time.Duration) (time.Duration, error) {
	if text == "" {
		return def, nil
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 30s or 5m", text)
	}
	if d < lowest {
		return 0, fmt.Errorf("%s is shorter than %s", d, lowest)
	}
	return d, nil
}

func (s *source) prune() bool { return s.spec.Prune == nil || *s.spec.Prune }

func (s *source) key() string { return s.obj.GetNamespace() + "/" + s.obj.GetName() }
