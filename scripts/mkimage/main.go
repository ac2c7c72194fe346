// Command mkimage is `make image`: it builds karmor's images (internal/imagebuild) from the
// binaries under --bin (linux-amd64/, linux-arm64/) and writes them to an OCI layout, or pushes
// them with --push REGISTRY/REPO-PREFIX. It prints each image's compressed size per platform.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/karmor/karmor/internal/imagebuild"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding linux-<arch>/ binaries")
	out := flag.String("layout", "bin/images", "OCI layout to write the images to (each tagged with its name)")
	push := flag.String("push", "", "push to this registry prefix instead (e.g. ghcr.io/karmor): PREFIX/NAME:VERSION")
	insecure := flag.Bool("insecure", false, "with --push: plain HTTP")
	version := flag.String("version", "dev", "the images' version (label and pushed tag)")
	archs := flag.String("platforms", strings.Join(imagebuild.Platforms, ","), "architectures to build")
	flag.Parse()
	if err := run(*bin, *out, *push, *version, strings.Split(*archs, ","), *insecure); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(bin, out, push, version string, archs []string, insecure bool) error {
	for _, spec := range imagebuild.Images {
		idx, err := imagebuild.Build(spec, bin, version, archs)
		if err != nil {
			return err
		}
		where := out + " (" + spec.Name + ")"
		if push != "" {
			where = push + "/" + spec.Name + ":" + version
			err = imagebuild.Push(where, idx, insecure)
		} else {
			err = imagebuild.WriteLayout(out, spec.Name, idx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range m.Manifests {
			img, err := idx.Image(d.Digest)
			if err != nil {
				return err
			}
			size, err := imagebuild.CompressedSize(img)
			if err != nil {
				return err
			}
			fmt.Printf("%s linux/%s %s: %.1f MB compressed, %s\n", spec.Name, d.Platform.Architecture, d.Digest, float64(size)/1e6, where)
		}
	}
	return nil
}
