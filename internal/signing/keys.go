package signing

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/karmor/karmor/internal/readlimit"
)

// maxKeyFileSize bounds a key file: a PEM key is a few KiB at most.
const maxKeyFileSize = 64 << 10

// PasswordFunc returns the password of an encrypted key file. It is called only for
// encrypted keys.
type PasswordFunc func() ([]byte, error)

// PrivateKey is a signing key: a cosign key file (generate-key-pair, encrypted) or a plain
// PEM private key (PKCS#8, SEC 1 or PKCS#1).
type PrivateKey struct {
	// Name is where the key came from, for messages.
	Name    string
	signer  crypto.Signer
	details signature.AlgorithmDetails
}

// LoadPrivateKey reads a private key file. password is called when the key is encrypted.
func LoadPrivateKey(path string, password PasswordFunc) (*PrivateKey, error) {
	data, err := readlimit.File(path, maxKeyFileSize)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return ParsePrivateKey(filepath.Base(path), data, password)
}

// ParsePrivateKey parses a PEM private key; name is used in messages.
func ParsePrivateKey(name string, data []byte, password PasswordFunc) (*PrivateKey, error) {
	pf := func(bool) ([]byte, error) {
		if password == nil {
			return nil, errors.New("the key is encrypted and no password was given")
		}
		return password()
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(data, pf)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", name, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: a %T cannot sign", name, priv)
	}
	return newPrivateKey(name, signer)
}

func newPrivateKey(name string, signer crypto.Signer) (*PrivateKey, error) {
	details, err := signature.GetDefaultAlgorithmDetails(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", name, err)
	}
	return &PrivateKey{Name: name, signer: signer, details: details}, nil
}

// Fingerprint is sha256:<hex> of the public key's DER form, as messages show it.
func (k *PrivateKey) Fingerprint() string { return fingerprint(k.signer.Public()) }

// sign signs data (not a digest) with the key's default algorithm.
func (k *PrivateKey) sign(data []byte) ([]byte, error) {
	s, err := signature.LoadSignerFromAlgorithmDetails(k.signer, k.details)
	if err != nil {
		return nil, err
	}
	return s.SignMessage(bytesReader(data))
}

// PublicKey is a trusted verification key.
type PublicKey struct {
	// Name is where the key came from (its file name), for messages.
	Name     string
	key      crypto.PublicKey
	verifier signature.Verifier
}

// LoadPublicKey reads a PEM public key file (cosign.pub, or any PKIX public key).
func LoadPublicKey(path string) (*PublicKey, error) {
	data, err := readlimit.File(path, maxKeyFileSize)
	if err != nil {
		return nil, fmt.Errorf("verification key: %w", err)
	}
	return ParsePublicKey(filepath.Base(path), data)
}

// ParsePublicKey parses a PEM public key; name is used in messages.
func ParsePublicKey(name string, data []byte) (*PublicKey, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("verification key %s: %w", name, err)
	}
	verifier, err := signature.LoadDefaultVerifier(pub)
	if err != nil {
		return nil, fmt.Errorf("verification key %s: %w", name, err)
	}
	return &PublicKey{Name: name, key: pub, verifier: verifier}, nil
}

// Fingerprint is sha256:<hex> of the key's DER form.
func (k *PublicKey) Fingerprint() string { return fingerprint(k.key) }

// Describe names the key for people: its name and fingerprint.
func (k *PublicKey) Describe() string { return fmt.Sprintf("key %s (%s)", k.Name, k.Fingerprint()) }

func fingerprint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// hint is the bundle's public key hint as sigstore-go writes it: base64 of the SHA-256 of the
// DER key.
func hint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:])
}
