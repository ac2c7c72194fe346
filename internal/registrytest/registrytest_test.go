package registrytest

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestRouteOf(t *testing.T) {
	for path, want := range map[string]string{
		"/v2/":                           RouteBase,
		"/v2/a/b/manifests/latest":       RouteManifest,
		"/v2/a/blobs/sha256:abc":         RouteBlob,
		"/v2/a/blobs/uploads/":           RouteUpload,
		"/v2/a/blobs/uploads/uuid":       RouteUpload,
		"/v2/a/tags/list":                RouteTags,
		"/token":                         RouteToken,
		"/metrics":                       RouteOther,
		"/v2/a/referrers/sha256:abcdef0": RouteOther,
	} {
		if got := RouteOf(path); got != want {
			t.Errorf("RouteOf(%q) = %q, want %q", path, got, want)
		}
	}
}

func get(t *testing.T, client *http.Client, url, user, password string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestBasicAuthRegistry(t *testing.T) {
	reg := New(t, Options{Auth: AuthBasic, Users: map[string]string{"u": "p"}})
	if resp := get(t, reg.Client(), reg.URL+"/v2/", "", ""); resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("anonymous: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp := get(t, reg.Client(), reg.URL+"/v2/", "u", "wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", resp.StatusCode)
	}
	if resp := get(t, reg.Client(), reg.URL+"/v2/", "u", "p"); resp.StatusCode != http.StatusOK {
		t.Errorf("right password: %d", resp.StatusCode)
	}
	if reg.Count("GET", RouteBase) != 3 {
		t.Errorf("counter: %s", reg.Counter)
	}
	if _, err := Start(Options{Auth: AuthBasic}); err == nil {
		t.Error("AuthBasic without users started")
	}
}

func TestTokenRegistry(t *testing.T) {
	reg := New(t, Options{TLS: true, Auth: AuthToken, Users: map[string]string{"u": "p"}})
	resp := get(t, reg.Client(), reg.URL+"/v2/", "", "")
	challenge := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(challenge, `realm="`+reg.URL+`/token"`) {
		t.Fatalf("challenge: %d %q", resp.StatusCode, challenge)
	}
	if resp := get(t, reg.Client(), reg.URL+"/token?service=registrytest&scope=repository:a/b:pull", "u", "nope"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("token with a wrong password: %d", resp.StatusCode)
	}
	resp = get(t, reg.Client(), reg.URL+"/token?service=registrytest&scope=repository:a/b:pull,push", "u", "p")
	var body struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Token == "" {
		t.Fatalf("token: %v %+v", err, body)
	}
	claims, err := base64.RawURLEncoding.DecodeString(strings.Split(body.Token, ".")[1])
	if err != nil || !strings.Contains(string(claims), `"name":"a/b","actions":["pull","push"]`) {
		t.Errorf("claims %s (%v)", claims, err)
	}
	req, _ := http.NewRequest(http.MethodGet, reg.URL+"/v2/a/b/tags/list", nil)
	req.Header.Set("Authorization", "Bearer "+body.Token)
	listed, err := reg.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer listed.Body.Close()
	// The token is accepted: the repository is unknown (404), not the caller (401).
	if b, _ := io.ReadAll(listed.Body); listed.StatusCode != http.StatusNotFound {
		t.Errorf("with the token: %d %s", listed.StatusCode, b)
	}
}

func TestMisbehavingFailsFirstThenServes(t *testing.T) {
	manifest, blobs := Artifact{Layers: []Layer{{Title: "a.yaml", Data: []byte("a")}}}.Build()
	m := NewMisbehaving(t, MisbehavingOptions{Repository: "r", Tag: "t", Manifest: manifest, Blobs: blobs, FailFirst: 2, FailStatus: http.StatusTooManyRequests})
	client := &http.Client{}
	for i, want := range []int{429, 429, 200} {
		if resp := get(t, client, m.URL+"/v2/r/manifests/t", "", ""); resp.StatusCode != want {
			t.Errorf("request %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
	resp := get(t, client, m.URL+"/v2/r/manifests/"+m.ManifestDigest().String(), "", "")
	if b, _ := io.ReadAll(resp.Body); string(b) != string(manifest) || resp.Header.Get("Docker-Content-Digest") != m.ManifestDigest().String() {
		t.Errorf("manifest by digest: %s", b)
	}
	if m.Count("GET", RouteManifest) != 4 {
		t.Errorf("counter: %s", m.Counter)
	}
}
