// Package imagebuild makes karmor's container images without a container engine: each image is
// one layer holding static binaries under /usr/local/bin (no shell, no libc, no package
// manager), with a config naming the entrypoint and the user, for linux/amd64 and linux/arm64,
// gathered in one multi-platform index (go-containerregistry). `make image` writes them to an
// OCI layout or pushes them to a registry. Builds are reproducible: file and config times are
// fixed, so the same binaries give the same digests.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BinDir is where the programs are in every image.
const BinDir = "/usr/local/bin"

// NonRoot is the uid:gid of images whose program needs no privilege (distroless's "nonroot").
const NonRoot = "65532:65532"

// Spec is one image: its name, the programs it holds (the first is the entrypoint) and its user.
type Spec struct {
	Name     string
	Programs []string
	User     string
}

// Images are the images karmor ships. karmord runs as root: it reads every container's /proc
// entries and root's files. The tools image (the CLI, the hook, the NRI plugin, the runc
// wrapper) runs as nobody in particular unless a deployment says otherwise (the chart's init
// step runs it as root to write the node's files). karmor-controller has an image of its own,
// non-root: a Deployment, one per cluster, that needs nothing of the node and none of the
// node programs.
var Images = []Spec{
	{Name: "karmord", Programs: []string{"karmord"}, User: "0:0"},
	{Name: "karmor", Programs: []string{"karmor", "karmor-hook", "karmor-nri", "karmor-runc"}, User: NonRoot},
	{Name: "karmor-controller", Programs: []string{"karmor-controller"}, User: NonRoot},
}

// Platforms are the architectures built; binaries come from <bin>/linux-<arch>/.
var Platforms = []string{"amd64", "arm64"}

// epoch is the time every file and config carries, for reproducible digests.
var epoch = time.Unix(0, 0).UTC()

// Build returns spec's multi-platform index from the binaries under binRoot/linux-<arch>/.
func Build(spec Spec, binRoot, version string, archs []string) (v1.ImageIndex, error) {
	var idx v1.ImageIndex = empty.Index
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	for _, arch := range archs {
		img, err := buildImage(spec, filepath.Join(binRoot, "linux-"+arch), version, arch)
		if err != nil {
			return nil, fmt.Errorf("%s for linux/%s: %w", spec.Name, arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	return idx, nil
}

func buildImage(spec Spec, binDir, version, arch string) (v1.Image, error) {
	layerTar, err := programsTar(binDir, spec.Programs)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{BinDir + "/" + spec.Programs[0]}
	cf.Config.User = spec.User
	cf.Config.Env = []string{"PATH=" + BinDir}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   spec.Name,
		"org.opencontainers.image.version": version,
		"org.opencontainers.image.source":  "https://github.com/karmor/karmor",
	}
	return mutate.ConfigFile(img, cf)
}

// programsTar is the layer: /usr/local/bin and the programs in it, owned by root, mode 0755,
// with fixed times.
func programsTar(binDir string, programs []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dir := range []string{"usr/", "usr/local/", "usr/local/bin/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	for _, p := range programs {
		data, err := os.ReadFile(filepath.Join(binDir, p))
		if err != nil {
			return nil, fmt.Errorf("%w (build it first: make image builds every architecture)", err)
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "usr/local/bin/" + p, Mode: 0o755, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteLayout adds idx to the OCI layout at dir (created when absent), named tag
// (org.opencontainers.image.ref.name), for `podman pull oci:DIR:TAG` and the like.
func WriteLayout(dir, tag string, idx v1.ImageIndex) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return err
		}
	}
	if err := p.RemoveDescriptors(refNameMatcher(tag)); err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
}

func refNameMatcher(tag string) func(v1.Descriptor) bool {
	return func(d v1.Descriptor) bool { return d.Annotations["org.opencontainers.image.ref.name"] == tag }
}

// Push pushes idx to ref with the credentials of the Docker config (as `docker login` leaves
// them); insecure allows plain HTTP.
func Push(ref string, idx v1.ImageIndex, insecure bool) error {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return err
	}
	return remote.WriteIndex(r, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain))
}

// CompressedSize is the sum of an image's compressed layer sizes and its config: what a pull
// transfers.
func CompressedSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	total := m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	return total, nil
}
