package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/signing"
)

// TrustedRootKey is the ConfigMap key of a Sigstore trusted root.
const TrustedRootKey = "trusted_root.json"

// inputs is what a PolicySource's OCI source is built from: its spec and the Secrets and
// ConfigMaps it names. fingerprint changes whenever any of them does, which is when the
// source is rebuilt (and its registry state, the digest in force, forgotten).
type inputs struct {
	transport   oci.TransportOptions
	trust       *signing.Trust
	fingerprint string
}

// loadInputs reads the Secrets and ConfigMaps spec names (one GET each: the controller may only
// get them, never list or watch) and builds the transport and the trust.
func loadInputs(ctx context.Context, kube kubernetes.Interface, src *source, base oci.TransportOptions) (*inputs, error) {
	ns := src.obj.GetNamespace()
	h := sha256.New()
	fmt.Fprintf(h, "generation=%d\n", src.obj.GetGeneration())
	in := &inputs{transport: base}
	in.transport.PlainHTTP = base.PlainHTTP || src.spec.Insecure

	if ref := src.spec.SecretRef; ref != nil {
		s, err := kube.CoreV1().Secrets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("spec.secretRef: Secret %s/%s: %w", ns, ref.Name, err)
		}
		fmt.Fprintf(h, "secret=%s@%s\n", s.UID, s.ResourceVersion)
		data, ok := s.Data[corev1.DockerConfigJsonKey]
		if !ok || s.Type != corev1.SecretTypeDockerConfigJson {
			return nil, fmt.Errorf("spec.secretRef: Secret %s/%s is not of type %s with key %s: create it with `kubectl create secret docker-registry`",
				ns, ref.Name, corev1.SecretTypeDockerConfigJson, corev1.DockerConfigJsonKey)
		}
		in.transport.DockerConfigJSON = data
	} else {
		// No credentials: anonymous, and never the controller's own ~/.docker/config.json.
		in.transport.DockerConfigJSON = []byte(`{"auths":{}}`)
	}

	if v := src.spec.Verify; v != nil {
		trust := &signing.Trust{RequireTlog: v.RequireTlog, NotationIdentities: v.NotationIdentities}
		if ref := v.KeysSecretRef; ref != nil {
			s, err := kube.CoreV1().Secrets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("spec.verify.keysSecretRef: Secret %s/%s: %w", ns, ref.Name, err)
			}
			fmt.Fprintf(h, "keys=%s@%s\n", s.UID, s.ResourceVersion)
			for _, name := range sortedKeys(s.Data) {
				if !strings.Contains(string(s.Data[name]), "-----BEGIN") {
					continue // not a PEM entry (a README, a private key's password): not a key
				}
				key, err := signing.ParsePublicKey(fmt.Sprintf("%s/%s[%s]", ns, ref.Name, name), s.Data[name])
				if err != nil {
					return nil, fmt.Errorf("spec.verify.keysSecretRef: %w", err)
				}
				trust.Keys = append(trust.Keys, key)
			}
			if len(trust.Keys) == 0 {
				return nil, fmt.Errorf("spec.verify.keysSecretRef: Secret %s/%s holds no PEM public key: put each key in its own entry, e.g. cosign.pub", ns, ref.Name)
			}
		}
		for _, id := range v.Identities {
			trust.Identities = append(trust.Identities, signing.Identity{
				Subject: id.Subject, SubjectRegexp: id.SubjectRegExp, Issuer: id.Issuer, IssuerRegexp: id.IssuerRegExp,
			})
		}
		if ref := v.TrustedRootConfigMapRef; ref != nil {
			cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("spec.verify.trustedRootConfigMapRef: ConfigMap %s/%s: %w", ns, ref.Name, err)
			}
			fmt.Fprintf(h, "root=%s@%s\n", cm.UID, cm.ResourceVersion)
			data, ok := cm.Data[TrustedRootKey]
			if !ok {
				return nil, fmt.Errorf("spec.verify.trustedRootConfigMapRef: ConfigMap %s/%s has no key %s", ns, ref.Name, TrustedRootKey)
			}
			tr, err := signing.ParseTrustedRoot(ns+"/"+ref.Name, []byte(data))
			if err != nil {
				return nil, fmt.Errorf("spec.verify.trustedRootConfigMapRef: %w", err)
			}
			trust.TrustedRoot = tr
		}
		if ref := v.NotationCertificatesConfigMapRef; ref != nil {
			cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("spec.verify.notationCertificatesConfigMapRef: ConfigMap %s/%s: %w", ns, ref.Name, err)
			}
			fmt.Fprintf(h, "notation=%s@%s\n", cm.UID, cm.ResourceVersion)
			for _, name := range sortedKeys(cm.Data) {
				if !strings.Contains(cm.Data[name], "-----BEGIN") {
					continue // not a PEM entry (a README), as for keysSecretRef
				}
				certs, err := signing.ParseNotationCertificates(fmt.Sprintf("%s/%s[%s]", ns, ref.Name, name), []byte(cm.Data[name]))
				if err != nil {
					return nil, fmt.Errorf("spec.verify.notationCertificatesConfigMapRef: %w", err)
				}
				trust.NotationCerts = append(trust.NotationCerts, certs...)
			}
			if len(trust.NotationCerts) == 0 {
				return nil, fmt.Errorf("spec.verify.notationCertificatesConfigMapRef: ConfigMap %s/%s holds no PEM certificate: put the CA certificates in an entry, e.g. ca.pem", ns, ref.Name)
			}
		}
		if !trust.Configured() {
			return nil, fmt.Errorf("spec.verify names no key, identity or notation certificate: give keysSecretRef, identities or notationCertificatesConfigMapRef, or remove spec.verify")
		}
		if err := trust.Check(); err != nil {
			return nil, fmt.Errorf("spec.verify: %w", err)
		}
		in.trust = trust
	}
	in.fingerprint = hex.EncodeToString(h.Sum(nil))
	return in, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
