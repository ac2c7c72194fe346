package oci

import (
	"strings"
	"testing"
)

func TestParseReferenceFollowsDockerRules(t *testing.T) {
	const dgst = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	tests := []struct {
		in                          string
		registry, repo, tag, digest string
		apiHost, full               string
	}{
		{"nginx", "docker.io", "library/nginx", "latest", "", "registry-1.docker.io", "docker.io/library/nginx:latest"},
		{"nginx:1.25", "docker.io", "library/nginx", "1.25", "", "registry-1.docker.io", "docker.io/library/nginx:1.25"},
		{"docker.io/nginx", "docker.io", "library/nginx", "latest", "", "registry-1.docker.io", "docker.io/library/nginx:latest"},
		{"index.docker.io/team/policies", "docker.io", "team/policies", "latest", "", "registry-1.docker.io", "docker.io/team/policies:latest"},
		{"team/policies:v1", "docker.io", "team/policies", "v1", "", "registry-1.docker.io", "docker.io/team/policies:v1"},
		{"localhost:5000/myimage:latest", "localhost:5000", "myimage", "latest", "", "localhost:5000", "localhost:5000/myimage:latest"},
		{"localhost/x", "localhost", "x", "latest", "", "localhost", "localhost/x:latest"},
		{"127.0.0.1:5000/a/b/c", "127.0.0.1:5000", "a/b/c", "latest", "", "127.0.0.1:5000", "127.0.0.1:5000/a/b/c:latest"},
		{"ghcr.io/org/p@" + dgst, "ghcr.io", "org/p", "", dgst, "ghcr.io", "ghcr.io/org/p@" + dgst},
		{"ghcr.io/org/p:v2@" + dgst, "ghcr.io", "org/p", "v2", dgst, "ghcr.io", "ghcr.io/org/p:v2@" + dgst},
		{"myhost:5000/x", "myhost:5000", "x", "latest", "", "myhost:5000", "myhost:5000/x:latest"},
		{"[::1]:5000/x:t", "[::1]:5000", "x", "t", "", "[::1]:5000", "[::1]:5000/x:t"},
		{"Registry.Example/team/p:V_1.0-rc", "Registry.Example", "team/p", "V_1.0-rc", "", "Registry.Example", "Registry.Example/team/p:V_1.0-rc"},
		{"my-host/a__b/c-d.e_f", "docker.io", "my-host/a__b/c-d.e_f", "latest", "", "registry-1.docker.io", "docker.io/my-host/a__b/c-d.e_f:latest"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ref, err := ParseReference(tt.in)
			if err != nil {
				t.Fatalf("ParseReference(%q): %v", tt.in, err)
			}
			if ref.Registry != tt.registry || ref.Repository != tt.repo || ref.Tag != tt.tag || string(ref.Digest) != tt.digest {
				t.Errorf("got %+v, want registry %q repo %q tag %q digest %q", ref, tt.registry, tt.repo, tt.tag, tt.digest)
			}
			if got := ref.APIHost(); got != tt.apiHost {
				t.Errorf("APIHost() = %q, want %q", got, tt.apiHost)
			}
			if got := ref.String(); got != tt.full {
				t.Errorf("String() = %q, want %q", got, tt.full)
			}
			wantTarget := tt.tag
			if tt.digest != "" {
				wantTarget = tt.digest
			}
			if ref.Target() != wantTarget {
				t.Errorf("Target() = %q, want %q", ref.Target(), wantTarget)
			}
		})
	}
}

func TestParseReferenceRejects(t *testing.T) {
	for _, in := range []string{"", " ", "Upper/Case", "host:5000/Repo", "a b", "x:tag:other", "x@sha256:abc", "/leading", "trailing/",
		"x:-tag", "x:" + strings.Repeat("t", 129), "ghcr.io/a//b", "host:port/x", "a/" + strings.Repeat("b", 255),
		strings.Repeat("ab", 32), "x@md5:44136fa355b3678a1146ad16f7e8649e"} {
		if ref, err := ParseReference(in); err == nil {
			t.Errorf("ParseReference(%q) = %+v, want an error", in, ref)
		} else if !strings.Contains(err.Error(), "reference") {
			t.Errorf("ParseReference(%q) error %q does not mention the reference", in, err)
		}
	}
}

func TestLoginHost(t *testing.T) {
	hub, _ := ParseReference("team/p")
	if hub.LoginHost() != "" {
		t.Errorf("Docker Hub login host = %q, want empty (plain `docker login`)", hub.LoginHost())
	}
	local, _ := ParseReference("localhost:5000/p")
	if local.LoginHost() != "localhost:5000" {
		t.Errorf("login host = %q", local.LoginHost())
	}
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"nginx", "localhost:5000/x:1", "ghcr.io/a/b@sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "a/b/c:d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseReference(s)
		if err != nil {
			return
		}
		if ref.Registry == "" || ref.Repository == "" || (ref.Tag == "" && ref.Digest == "") {
			t.Fatalf("ParseReference(%q) = %+v: incomplete", s, ref)
		}
		again, err := ParseReference(ref.String())
		if err != nil || again != ref {
			t.Fatalf("round trip of %q: %q -> %+v, %v", s, ref.String(), again, err)
		}
	})
}
