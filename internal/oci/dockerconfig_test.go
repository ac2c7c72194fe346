package oci

import (
	"context"
	"encoding/base64"
	"testing"
)

// TestDockerConfigCredential: keys with or without scheme and path match their host, Docker
// Hub's names are one, an unknown host is anonymous, and broken input is an error.
func TestDockerConfigCredential(t *testing.T) {
	auth := base64.StdEncoding.EncodeToString([]byte("ci:pa:ss"))
	cred, err := dockerConfigCredential([]byte(`{"auths":{
		"https://registry.example.com/v2/": {"auth": "` + auth + `"},
		"https://index.docker.io/v1/": {"username": "hub", "password": "pw"},
		"localhost:5000": {"identitytoken": "tok"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for host, want := range map[string]string{"registry.example.com": "ci/pa:ss", "registry-1.docker.io": "hub/pw", "docker.io": "hub/pw", "localhost:5000": "/", "other.example.com": "/"} {
		c, err := cred(ctx, host)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Username + "/" + c.Password; got != want {
			t.Errorf("%s: %q, want %q", host, got, want)
		}
	}
	if c, _ := cred(ctx, "localhost:5000"); c.RefreshToken != "tok" {
		t.Errorf("identity token: %+v", c)
	}
	for _, bad := range []string{`{`, `{"auths":{"h":{"auth":"!!"}}}`, `{"auths":{"h":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("nocolon")) + `"}}}`} {
		if _, err := dockerConfigCredential([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
