package containerd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/karmor/karmor/internal/runcwrap"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// runcLogTime matches the time field of runc's own error lines, the one part of its output that
// differs between two otherwise identical calls.
var runcLogTime = regexp.MustCompile(`time="[^"]*" `)

// TestRuncWrapperAlone runs karmor-runc by hand, as Docker or containerd would, against a real
// karmord: containers it creates are reported, and every other command is runc's own.
func TestRuncWrapperAlone(t *testing.T) {
	testutil.RequireRoot(t)
	runc := testutil.RequireCommand(t, "runc", "apt-get install runc")
	k := startKarmord(t)
	wrapper := testutil.Binary(t, "karmor-runc")

	dir, err := os.MkdirTemp("", "krw-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	root := filepath.Join(dir, "root") // runc's state for this test only
	cfgPath := filepath.Join(dir, "karmor-runc.json")
	cfg, _ := json.Marshal(runcwrap.ConfigFromHook(k.hookConfig(t), runc))
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), runcwrap.EnvConfig+"="+cfgPath)
	t.Cleanup(func() {
		for _, id := range []string{"kr-a", "kr-b"} {
			run(nil, runc, "--root", root, "delete", "-f", id)
		}
	})

	// same runs one command line through runc and through the wrapper and wants the same result.
	same := func(t *testing.T, args ...string) {
		t.Helper()
		full := append([]string{"--root", root}, args...)
		wo, we, wc := run(env, wrapper, full...)
		ro, re, rc := run(env, runc, full...)
		we, re = runcLogTime.ReplaceAllString(we, ""), runcLogTime.ReplaceAllString(re, "")
		if wo != ro || we != re || wc != rc {
			t.Fatalf("%q differs:\nkarmor-runc: exit %d\n%s%s\nrunc: exit %d\n%s%s", args, wc, wo, we, rc, ro, re)
		}
	}

	t.Run("run is reported", func(t *testing.T) {
		bundle := testutil.Bundle(t, []string{"sh", "-c", "true"}, nil)
		if out, errOut, code := run(env, wrapper, "--root", root, "run", "--bundle", bundle, "kr-run"); code != 0 {
			t.Fatalf("karmor-runc run: exit %d\n%s%s", code, out, errOut)
		}
		start := k.waitEvent(t, agentapi.KindStart, "kr-run")
		if start.Stage != "createRuntime" || start.Container.Bundle != bundle {
			t.Fatalf("start event %+v", start)
		}
		k.waitEvent(t, agentapi.KindStop, "kr-run")
	})

	t.Run("other commands are runc's", func(t *testing.T) {
		for _, args := range [][]string{{"list"}, {"list", "--format", "json"}, {"state", "nope"}, {"kill", "nope", "KILL"},
			{"delete", "nope"}, {"--version"}, {"no-such-command"}, {"create"}, {"run", "--bundle", "/nonexistent", "x"}} {
			same(t, args...)
		}
		// Two containers made the two ways, then every command on each: same answers.
		sleeper := testutil.Bundle(t, []string{"sleep", "1000"}, nil)
		if o, e, c := run(env, wrapper, "--root", root, "create", "--bundle", sleeper, "kr-a"); c != 0 {
			t.Fatalf("karmor-runc create: exit %d\n%s%s", c, o, e)
		}
		k.waitEvent(t, agentapi.KindStart, "kr-a")
		plain := testutil.Bundle(t, []string{"sleep", "1000"}, nil)
		if o, e, c := run(nil, runc, "--root", root, "create", "--bundle", plain, "kr-b"); c != 0 {
			t.Fatalf("runc create: exit %d\n%s%s", c, o, e)
		}
		same(t, "list", "--format", "json")
		same(t, "state", "kr-a")
		same(t, "state", "kr-b")
		for _, step := range [][]string{{"start"}, {"kill", "KILL"}} {
			wo, we, wc := run(env, wrapper, append([]string{"--root", root, step[0], "kr-a"}, step[1:]...)...)
			ro, re, rc := run(nil, runc, append([]string{"--root", root, step[0], "kr-b"}, step[1:]...)...)
			if wo != ro || runcLogTime.ReplaceAllString(we, "") != runcLogTime.ReplaceAllString(re, "") || wc != rc {
				t.Fatalf("%s: karmor-runc exit %d %q%q; runc exit %d %q%q", step[0], wc, wo, we, rc, ro, re)
			}
		}
		for _, id := range []string{"kr-a", "kr-b"} {
			if o, e, c := run(nil, runc, "--root", root, "delete", "-f", id); c != 0 {
				t.Fatalf("delete %s: exit %d %s%s", id, c, o, e)
			}
		}
		// Deleting through the wrapper and through runc ends the same way: the stop is reported
		// for the container whose bundle had the hooks.
		k.waitEvent(t, agentapi.KindStop, "kr-a")
		if k.hasEvent("kr-b") {
			t.Fatal("a container created by plain runc was reported")
		}
		same(t, "delete", "kr-a")
		same(t, "list")
	})
}
