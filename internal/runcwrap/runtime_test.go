package runcwrap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeExe makes an executable file; link, when set, makes name a hard link to it instead, so the
// two are the same file as os.SameFile sees it.
func writeExe(t *testing.T, path, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if link != "" {
		if err := os.Link(link, path); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestResolveRuntime(t *testing.T) {
	d := t.TempDir()
	self := filepath.Join(d, "wrapper", "karmor-runc")
	writeExe(t, self, "")
	writeExe(t, filepath.Join(d, "first", "runc"), self) // the wrapper installed as "runc"
	writeExe(t, filepath.Join(d, "second", "runc"), "")
	notExec := filepath.Join(d, "noexec", "runc")
	writeExe(t, notExec, "")
	if err := os.Chmod(notExec, 0o644); err != nil {
		t.Fatal(err)
	}
	path := strings.Join([]string{filepath.Join(d, "noexec"), "relative/dir", filepath.Join(d, "first"), filepath.Join(d, "second")}, ":")

	got, err := ResolveRuntime("", path, self)
	if err != nil || got != filepath.Join(d, "second", "runc") {
		t.Fatalf("PATH lookup = %q, %v; want the second runc (first is the wrapper, noexec is not executable)", got, err)
	}
	if got, err := ResolveRuntime(filepath.Join(d, "second", "runc"), "", self); err != nil || got != filepath.Join(d, "second", "runc") {
		t.Fatalf("explicit path = %q, %v", got, err)
	}
	if _, err := ResolveRuntime(filepath.Join(d, "first", "runc"), path, self); !errors.Is(err, ErrRuntimeIsSelf) {
		t.Fatalf("explicit path to the wrapper: got %v, want ErrRuntimeIsSelf", err)
	}
	if _, err := ResolveRuntime("", filepath.Join(d, "first"), self); !errors.Is(err, ErrRuntimeIsSelf) {
		t.Fatalf("only the wrapper on PATH: got %v, want ErrRuntimeIsSelf", err)
	}
	if _, err := ResolveRuntime("", filepath.Join(d, "nothing"), self); err == nil || errors.Is(err, ErrRuntimeIsSelf) {
		t.Fatalf("no runc at all: got %v, want a not-found error", err)
	}
	if _, err := ResolveRuntime(notExec, path, self); err == nil {
		t.Fatal("a non-executable explicit runtime was accepted")
	}
	if got, err := ResolveRuntime("crun-like", filepath.Join(d, "second"), self); err == nil {
		t.Fatalf("a name not on PATH resolved to %q", got)
	}
}
