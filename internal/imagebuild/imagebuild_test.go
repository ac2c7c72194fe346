package imagebuild

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// fakeBins writes small stand-ins for every program of every image under root/linux-<arch>/.
func fakeBins(t *testing.T, root string, archs ...string) {
	t.Helper()
	for _, arch := range archs {
		for _, spec := range Images {
			for _, p := range spec.Programs {
				path := filepath.Join(root, "linux-"+arch, p)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(p+" for "+arch), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestImagesArePlatformIndexesOfStaticPrograms: each image is an index of one image per
// platform, whose one layer holds exactly its programs (0755, root's) under /usr/local/bin, with
// the entrypoint and user of its Spec; building twice gives the same digest.
func TestImagesArePlatformIndexesOfStaticPrograms(t *testing.T) {
	root := t.TempDir()
	fakeBins(t, root, "amd64", "arm64")
	for _, spec := range Images {
		idx, err := Build(spec, root, "v1.2.3", Platforms)
		if err != nil {
			t.Fatal(err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Manifests) != 2 || m.Manifests[0].Platform.Architecture != "amd64" || m.Manifests[1].Platform.Architecture != "arm64" {
			t.Fatalf("%s: index %+v", spec.Name, m.Manifests)
		}
		for _, d := range m.Manifests {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			arch := d.Platform.Architecture
			if cf.Architecture != arch || cf.Config.User != spec.User || cf.Config.Entrypoint[0] != "/usr/local/bin/"+spec.Programs[0] ||
				cf.Config.Labels["org.opencontainers.image.version"] != "v1.2.3" {
				t.Errorf("%s %s: config %+v", spec.Name, arch, cf.Config)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("%s %s: %d layers, %v", spec.Name, arch, len(layers), err)
			}
			rc, err := layers[0].Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			files := map[string]string{}
			tr := tar.NewReader(rc)
			for {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if h.Typeflag == tar.TypeReg {
					if h.Mode != 0o755 || h.Uid != 0 {
						t.Errorf("%s: mode %o uid %d", h.Name, h.Mode, h.Uid)
					}
					b, _ := io.ReadAll(tr)
					files[h.Name] = string(b)
				}
			}
			rc.Close()
			if len(files) != len(spec.Programs) {
				t.Errorf("%s %s: files %v", spec.Name, arch, files)
			}
			for _, p := range spec.Programs {
				if files["usr/local/bin/"+p] != p+" for "+arch {
					t.Errorf("%s %s: %s holds %q", spec.Name, arch, p, files["usr/local/bin/"+p])
				}
			}
		}
		again, err := Build(spec, root, "v1.2.3", Platforms)
		if err != nil {
			t.Fatal(err)
		}
		d1, _ := idx.Digest()
		d2, _ := again.Digest()
		if d1 != d2 {
			t.Errorf("%s: two builds of the same binaries differ: %s %s", spec.Name, d1, d2)
		}
	}
	if _, err := Build(Images[0], root, "v1", []string{"riscv64"}); err == nil {
		t.Error("built an image without its binaries")
	}
}

func TestWriteLayoutReplacesTheTag(t *testing.T) {
	root := t.TempDir()
	fakeBins(t, root, "amd64")
	dir := filepath.Join(t.TempDir(), "layout")
	for _, v := range []string{"v1", "v2"} {
		idx, err := Build(Images[0], root, v, []string{"amd64"})
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteLayout(dir, "karmord", idx); err != nil {
			t.Fatal(err)
		}
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	li, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := li.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "karmord" {
		t.Errorf("layout's index after writing karmord twice: %+v", m.Manifests)
	}
}

// TestEveryProgramShipsInOneImage: the programs `make build` and `make image` build (the
// Makefile's PROGRAMS) are exactly those of the images, each in one image, so a new program
// cannot be left out of the images (nor an image name a program nothing builds); the
// controller's image runs as the non-root user the chart's Deployment expects.
func TestEveryProgramShipsInOneImage(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var built []string
	for _, line := range strings.Split(string(mk), "\n") {
		if v, ok := strings.CutPrefix(line, "PROGRAMS := "); ok {
			built = strings.Fields(v)
		}
	}
	if len(built) == 0 {
		t.Fatal("no PROGRAMS := line in the Makefile")
	}
	in := map[string]string{}
	for _, spec := range Images {
		for _, p := range spec.Programs {
			if other, dup := in[p]; dup {
				t.Errorf("%s is in the images %s and %s", p, other, spec.Name)
			}
			in[p] = spec.Name
		}
	}
	for _, p := range built {
		if in[p] == "" {
			t.Errorf("the Makefile builds %s but no image holds it", p)
		}
		delete(in, p)
	}
	for p, image := range in {
		t.Errorf("the image %s holds %s, which the Makefile does not build", image, p)
	}
	for _, spec := range Images {
		if spec.Programs[0] == "karmor-controller" && spec.User != NonRoot {
			t.Errorf("karmor-controller's image runs as %s; the chart runs it as %s", spec.User, NonRoot)
		}
	}
}
