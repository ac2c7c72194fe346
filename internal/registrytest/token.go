package registrytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

const (
	tokenService    = "registrytest"
	tokenIssuerName = "registrytest-issuer"
	tokenKeyID      = "registrytest-key"
)

// tokenIssuer is the token endpoint of a registry with AuthToken, in the shape of
// https://distribution.github.io/distribution/spec/auth/token/: it checks the
// caller's Basic credentials and returns an ES256 JWT granting the requested scopes.
type tokenIssuer struct {
	users map[string]string
	key   *ecdsa.PrivateKey
}

func newTokenIssuer(users map[string]string) (*tokenIssuer, error) {
	if len(users) == 0 {
		return nil, fmt.Errorf("registrytest: AuthToken needs at least one user")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &tokenIssuer{users: users, key: key}, nil
}

// jwks returns the JSON Web Key Set the registry uses to trust the issuer's tokens.
func (ti *tokenIssuer) jwks() []byte {
	point, err := ti.key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err) // a freshly generated P-256 key always encodes
	}
	enc := base64.RawURLEncoding
	keys := map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "kid": tokenKeyID, "alg": "ES256", "use": "sig",
		"x": enc.EncodeToString(point[1:33]), "y": enc.EncodeToString(point[33:65]),
	}}}
	b, _ := json.Marshal(keys)
	return b
}

func (ti *tokenIssuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, password, ok := r.BasicAuth()
	want, known := ti.users[user]
	if !ok || !known || subtle.ConstantTimeCompare([]byte(password), []byte(want)) != 1 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}`))
		return
	}
	token, err := ti.sign(user, r.URL.Query()["scope"])
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token": token, "access_token": token, "expires_in": 300,
		"issued_at": time.Now().UTC().Format(time.RFC3339),
	})
}

type accessClaim struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// sign grants every requested scope to an authenticated user.
func (ti *tokenIssuer) sign(subject string, scopes []string) (string, error) {
	var access []accessClaim
	for _, list := range scopes {
		for _, scope := range strings.Fields(list) {
			first := strings.Index(scope, ":")
			last := strings.LastIndex(scope, ":")
			if first < 0 || last == first {
				continue
			}
			access = append(access, accessClaim{
				Type: scope[:first], Name: scope[first+1 : last],
				Actions: strings.Split(scope[last+1:], ","),
			})
		}
	}
	now := time.Now()
	header := map[string]string{"typ": "JWT", "alg": "ES256", "kid": tokenKeyID}
	claims := map[string]any{
		"iss": tokenIssuerName, "sub": subject, "aud": tokenService,
		"exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
		"jti": fmt.Sprintf("%d", now.UnixNano()), "access": access,
	}
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signingInput := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	digest := sha256.Sum256([]byte(signingInput))
	r, s, err := ecdsa.Sign(rand.Reader, ti.key, digest[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64) // JWS ES256: fixed-width R || S
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signingInput + "." + enc.EncodeToString(sig), nil
}
