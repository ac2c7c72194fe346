package oci

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/karmor/karmor/internal/registrytest"
)

// Benchmarks of 200-file artifacts against an in-process registry; bench/oci/run.sh
// compares the built binary with the ORAS CLI.

func benchTransport(b *testing.B) TransportOptions {
	b.Setenv(EnvPlainHTTP, "true")
	return TransportOptions{DockerConfig: filepath.Join(b.TempDir(), "config.json")}
}

func BenchmarkPush200(b *testing.B) {
	reg := registrytest.New(b, registrytest.Options{})
	tr := benchTransport(b)
	files := policyFiles(200)
	for i := 0; b.Loop(); i++ {
		ref := mustRefB(b, fmt.Sprintf("%s/bench/push-%d:v1", reg.Host, i))
		if _, err := Push(context.Background(), ref, files, PushOptions{Transport: tr}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(reg.Total())/float64(b.N), "requests/op")
}

func BenchmarkPull200(b *testing.B) {
	reg := registrytest.New(b, registrytest.Options{})
	tr := benchTransport(b)
	ref := mustRefB(b, reg.Host+"/bench/pull:v1")
	if _, err := Push(context.Background(), ref, policyFiles(200), PushOptions{Transport: tr}); err != nil {
		b.Fatal(err)
	}
	root := b.TempDir()
	reg.Reset()
	for i := 0; b.Loop(); i++ {
		if _, err := Pull(context.Background(), ref, filepath.Join(root, fmt.Sprint(i)), PullOptions{Transport: tr}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(reg.Total())/float64(b.N), "requests/op")
}

func BenchmarkPull200Unchanged(b *testing.B) {
	reg := registrytest.New(b, registrytest.Options{})
	tr := benchTransport(b)
	ref := mustRefB(b, reg.Host+"/bench/pull:v1")
	if _, err := Push(context.Background(), ref, policyFiles(200), PushOptions{Transport: tr}); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if _, err := Pull(context.Background(), ref, dir, PullOptions{Transport: tr}); err != nil {
		b.Fatal(err)
	}
	reg.Reset()
	for b.Loop() {
		if _, err := Pull(context.Background(), ref, dir, PullOptions{Transport: tr}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(reg.Total())/float64(b.N), "requests/op")
}

func mustRefB(b *testing.B, s string) Reference {
	ref, err := ParseReference(s)
	if err != nil {
		b.Fatal(err)
	}
	return ref
}
