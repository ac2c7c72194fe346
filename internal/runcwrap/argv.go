package runcwrap

import (
	"path/filepath"
	"strings"
)

// Invocation is what the wrapper needs to know of one runc command line.
type Invocation struct {
	// Command is runc's subcommand ("create", "run", "state", ...), empty when the command line
	// has none (`runc --version`, `runc --help`).
	Command string
	// Bundle is the --bundle/-b value as given (possibly relative), empty when the command line
	// names none; runc then uses its working directory.
	Bundle string
	// LogPath and LogFormat are runc's --log and --log-format global flags: where the caller
	// (containerd's shim, dockerd) reads runc's messages, so the wrapper's warnings go there too.
	LogPath   string
	LogFormat string
}

// NeedsHooks reports whether the command starts a container from a bundle, the only case in which
// the wrapper touches the bundle's config.json.
func (inv Invocation) NeedsHooks() bool { return inv.Command == "create" || inv.Command == "run" }

// BundleDir returns the absolute bundle directory runc will use, given its working directory.
func (inv Invocation) BundleDir(cwd string) string {
	if inv.Bundle == "" {
		return cwd
	}
	if filepath.IsAbs(inv.Bundle) {
		return filepath.Clean(inv.Bundle)
	}
	return filepath.Join(cwd, inv.Bundle)
}

// runc's global flags that take a value (runc 1.1 to 1.3: --log, --log-format, --root, --criu,
// --rootless). Boolean ones (--debug, --systemd-cgroup, --help, --version) need no entry: a flag
// not listed here never consumes the next argument.
var globalValueFlags = map[string]bool{"log": true, "log-format": true, "root": true, "criu": true, "rootless": true}

// The value flags of `runc create` and `runc run`; their booleans (--detach, --keep, --no-pivot,
// --no-new-keyring, --no-subreaper) need no entry.
var createValueFlags = map[string]bool{"bundle": true, "b": true, "console-socket": true, "pid-file": true, "preserve-fds": true}

// ParseArgs reads a runc command line the way runc's flag parser (urfave/cli v1 over Go's flag
// package) does: flags may start with one or two dashes, values follow as `--flag value` or
// `--flag=value`, global flags stop at the first non-flag (the command) or at "--", and the
// command's flags may come before or after the container id. args excludes argv[0].
//
// It never fails: a command line runc itself would reject is passed to runc unchanged, and runc
// reports the mistake in its own words.
func ParseArgs(args []string) Invocation {
	var inv Invocation
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		name, value, inline, ok := splitFlag(a)
		if !ok {
			break
		}
		if !globalValueFlags[name] {
			continue
		}
		if !inline {
			if i+1 >= len(args) {
				return inv // `runc --root` alone: let runc complain
			}
			i++
			value = args[i]
		}
		switch name {
		case "log":
			inv.LogPath = value
		case "log-format":
			inv.LogFormat = value
		}
	}
	if i >= len(args) {
		return inv
	}
	inv.Command = args[i]
	if !inv.NeedsHooks() {
		return inv
	}
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		if a == "--" {
			break
		}
		name, value, inline, ok := splitFlag(a)
		if !ok || !createValueFlags[name] {
			continue
		}
		if !inline {
			if j+1 >= len(rest) {
				break
			}
			j++
			value = rest[j]
		}
		if name == "bundle" || name == "b" {
			inv.Bundle = value // the last one wins, as with Go's flag package
		}
	}
	return inv
}

// splitFlag splits "-name", "--name", "-name=value" and "--name=value". ok is false for
// arguments that are not flags: "-", "--" and anything not starting with a dash.
func splitFlag(a string) (name, value string, inline, ok bool) {
	if len(a) < 2 || a[0] != '-' {
		return "", "", false, false
	}
	s := a[1:]
	if s[0] == '-' {
		s = s[1:]
	}
	if s == "" || s[0] == '-' || s[0] == '=' {
		return "", "", false, false
	}
	name, value, inline = strings.Cut(s, "=")
	return name, value, inline, true
}
