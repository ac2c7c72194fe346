package runcwrap

import "testing"

func TestParseArgs(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want Invocation
	}{
		{"containerd shim create", []string{"--root", "/run/containerd/runc/k8s.io", "--log", "/run/x/log.json", "--log-format", "json", "--systemd-cgroup",
			"create", "--bundle", "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc", "--pid-file", "/run/x/init.pid", "abc"},
			Invocation{Command: "create", Bundle: "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc", LogPath: "/run/x/log.json", LogFormat: "json"}},
		{"equals forms", []string{"--root=/r", "--log=/l", "--log-format=text", "run", "--bundle=/b", "id"},
			Invocation{Command: "run", Bundle: "/b", LogPath: "/l", LogFormat: "text"}},
		{"short -b after id", []string{"run", "-d", "id", "-b", "rel/dir"}, Invocation{Command: "run", Bundle: "rel/dir"}},
		{"-b=", []string{"create", "-b=/x", "id"}, Invocation{Command: "create", Bundle: "/x"}},
		{"single-dash long", []string{"-root", "/r", "create", "-bundle", "/y", "id"}, Invocation{Command: "create", Bundle: "/y"}},
		{"last bundle wins", []string{"create", "-b", "/one", "--bundle", "/two", "id"}, Invocation{Command: "create", Bundle: "/two"}},
		{"no bundle: cwd", []string{"run", "--detach", "id"}, Invocation{Command: "run"}},
		{"value flag value is not the bundle", []string{"create", "--pid-file", "--bundle", "id"}, Invocation{Command: "create"}},
		{"console socket then bundle", []string{"create", "--console-socket", "/s", "--bundle", "/b", "id"}, Invocation{Command: "create", Bundle: "/b"}},
		{"flags after -- are args", []string{"create", "id", "--", "--bundle", "/no"}, Invocation{Command: "create"}},
		{"global -- then command", []string{"--debug", "--", "run", "-b", "/b", "id"}, Invocation{Command: "run", Bundle: "/b"}},
		{"rootless value", []string{"--rootless", "auto", "create", "id"}, Invocation{Command: "create"}},
		{"bool global with value", []string{"--systemd-cgroup=true", "run", "id"}, Invocation{Command: "run"}},
		{"state passes", []string{"--root", "/r", "state", "id"}, Invocation{Command: "state"}},
		{"exec has no bundle", []string{"exec", "-b", "/x", "id", "sh"}, Invocation{Command: "exec"}},
		{"version", []string{"--version"}, Invocation{}},
		{"empty", nil, Invocation{}},
		{"dangling global value", []string{"--root"}, Invocation{}},
		{"dangling bundle", []string{"create", "-b"}, Invocation{Command: "create"}},
		{"lone dash is the command", []string{"-", "x"}, Invocation{Command: "-"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseArgs(tc.args); got != tc.want {
				t.Fatalf("ParseArgs(%q)\n got %+v\nwant %+v", tc.args, got, tc.want)
			}
		})
	}
}

func TestBundleDir(t *testing.T) {
	for _, tc := range []struct{ bundle, cwd, want string }{
		{"", "/work", "/work"},
		{"rel", "/work", "/work/rel"},
		{"../up", "/work/a", "/work/up"},
		{"/abs/./x/", "/work", "/abs/x"},
	} {
		if got := (Invocation{Bundle: tc.bundle}).BundleDir(tc.cwd); got != tc.want {
			t.Errorf("BundleDir(%q, cwd %q) = %q, want %q", tc.bundle, tc.cwd, got, tc.want)
		}
	}
}

func TestNeedsHooks(t *testing.T) {
	for cmd, want := range map[string]bool{"create": true, "run": true, "start": false, "delete": false, "restore": false, "": false} {
		if got := (Invocation{Command: cmd}).NeedsHooks(); got != want {
			t.Errorf("NeedsHooks(%q) = %v, want %v", cmd, got, want)
		}
	}
}

func FuzzParseArgs(f *testing.F) {
	f.Add("--root\x00/r\x00create\x00-b\x00/x\x00id")
	f.Add("run\x00--bundle=\x00id")
	f.Fuzz(func(t *testing.T, joined string) {
		var args []string
		start := 0
		for i := 0; i < len(joined); i++ {
			if joined[i] == 0 {
				args = append(args, joined[start:i])
				start = i + 1
			}
		}
		args = append(args, joined[start:])
		inv := ParseArgs(args)
		// Whatever was found must be one of the arguments (or part of a --flag=value one).
		if inv.Bundle != "" && !containsPart(args, inv.Bundle) {
			t.Fatalf("bundle %q is not in %q", inv.Bundle, args)
		}
		if inv.Command != "" && !containsPart(args, inv.Command) {
			t.Fatalf("command %q is not in %q", inv.Command, args)
		}
		if inv.Bundle != "" && !inv.NeedsHooks() {
			t.Fatalf("bundle %q found for command %q", inv.Bundle, inv.Command)
		}
	})
}

func containsPart(args []string, s string) bool {
	for _, a := range args {
		if a == s || len(a) > len(s) && a[len(a)-len(s)-1] == '=' && a[len(a)-len(s):] == s {
			return true
		}
	}
	return false
}
