package oci

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/registrytest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestNewManifestRoundTripsThroughParse(t *testing.T) {
	layers := []ocispec.Descriptor{{MediaType: MediaTypePolicyLayer, Digest: digest.FromString("a"), Size: 1, Annotations: map[string]string{AnnotationTitle: "a.yaml"}}}
	data, desc, err := newManifest(layers, map[string]string{AnnotationCreated: "2026-01-01T00:00:00Z"})
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != digest.FromBytes(data) || desc.Size != int64(len(data)) {
		t.Errorf("descriptor %+v does not describe the bytes", desc)
	}
	ref := Reference{Registry: "r", Repository: "x", Tag: "t"}
	m, err := parseManifest(ref, desc, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Policies) != 1 || m.Policies[0].Annotations[AnnotationTitle] != "a.yaml" || m.Config.MediaType != MediaTypeConfig {
		t.Errorf("parsed %+v", m)
	}
}

func TestParseManifestDescribesOtherContent(t *testing.T) {
	ref := Reference{Registry: "r", Repository: "x", Tag: "t"}
	dockerImage := `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
		"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},
		"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}]}`
	tests := map[string]struct{ mediaType, data, want string }{
		"docker image":  {"application/vnd.docker.distribution.manifest.v2+json", dockerImage, "container image"},
		"docker list":   {"application/vnd.docker.distribution.manifest.list.v2+json", `{"schemaVersion":2,"manifests":[]}`, "image index"},
		"untyped index": {"", `{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":1}]}`, "image index"},
		"no layers":     {ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`, "no layers"},
		"other type":    {"application/vnd.example+json", `{}`, "not an image manifest"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseManifest(ref, ocispec.Descriptor{MediaType: tt.mediaType}, []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrNotPolicyArtifact) {
				t.Errorf("err = %v, want ErrNotPolicyArtifact saying %q", err, tt.want)
			}
		})
	}
}

func TestParseManifestAcceptsArtifactManifestBlobs(t *testing.T) {
	data := `{"mediaType":"application/vnd.oci.artifact.manifest.v1+json","artifactType":"application/vnd.cncf.kubearmor.config.v1+json",
		"blobs":[{"mediaType":"application/vnd.cncf.kubearmor.policy.layer.v1.yaml","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"annotations":{"org.opencontainers.image.title":"a.yaml"}}]}`
	m, err := parseManifest(Reference{Registry: "r", Repository: "x", Tag: "t"}, ocispec.Descriptor{MediaType: "application/vnd.oci.artifact.manifest.v1+json"}, []byte(data))
	if err != nil || len(m.Policies) != 1 {
		t.Fatalf("m = %+v, err = %v", m, err)
	}
}

// FuzzParseManifest feeds arbitrary manifests to the decoder and the layer checks:
// they must not panic, and whatever passes both names only plain, unique files of
// the policy type within the limits.
func FuzzParseManifest(f *testing.F) {
	good, _ := registrytest.Artifact{Layers: []registrytest.Layer{{Title: "a.yaml", Data: []byte("x")}, {Title: "b.yaml", Data: []byte("y")}}}.Build()
	evil, _ := registrytest.Artifact{Layers: []registrytest.Layer{{Title: "../a.yaml", Data: []byte("x")}, {Title: "a.yaml", Size: -1}}}.Build()
	f.Add(good, ocispec.MediaTypeImageManifest)
	f.Add(evil, ocispec.MediaTypeImageManifest)
	f.Add(registrytest.Index(digest.FromString("x")), ocispec.MediaTypeImageIndex)
	f.Add([]byte(`{"blobs":[{}]}`), "application/vnd.oci.artifact.manifest.v1+json")
	f.Add([]byte(`null`), "")
	ref := Reference{Registry: "r", Repository: "x", Tag: "t"}
	opts := FetchOptions{}.withDefaults()
	f.Fuzz(func(t *testing.T, data []byte, mediaType string) {
		m, err := parseManifest(ref, ocispec.Descriptor{MediaType: mediaType}, data)
		if err != nil {
			return
		}
		if len(m.Policies) == 0 {
			t.Fatal("accepted a manifest without policy layers")
		}
		if checkLayers(ref, m.Policies, opts) != nil {
			return
		}
		seen := map[string]bool{}
		var total int64
		for _, l := range m.Policies {
			title := l.Annotations[AnnotationTitle]
			if l.MediaType != MediaTypePolicyLayer || ValidateTitle(title) != nil || seen[title] || l.Size < 0 || l.Size > opts.MaxLayerSize || l.Digest.Validate() != nil {
				raw, _ := json.Marshal(l)
				t.Fatalf("checked layer breaks a rule: %s", raw)
			}
			seen[title] = true
			total += l.Size
		}
		if total > opts.MaxTotalSize {
			t.Fatalf("total %d over the limit", total)
		}
	})
}
