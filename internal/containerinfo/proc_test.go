package containerinfo

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseStatStartTime(t *testing.T) {
	// The command name holds spaces and a ')' to trip naive splitting.
	line := "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615"
	got, err := parseStat([]byte(line))
	if err != nil || got.Start != 98765 || got.State != 'S' {
		t.Fatalf("got %+v, %v; want start 98765, state S", got, err)
	}
	for _, bad := range []string{"", "1234 no parens", "1 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 notanumber"} {
		if v, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("%q: accepted, %+v", bad, v)
		}
	}
}

func TestParseCgroupFile(t *testing.T) {
	cases := map[string]string{
		"0::/system.slice/crio-abc.scope\n":                                  "/system.slice/crio-abc.scope",
		"12:pids:/kubepods/pod1/abc\n4:memory:/kubepods/pod1/abc\n0::/\n":    "/kubepods/pod1/abc",
		"9:name=systemd:/\n4:memory:/m\n3:cpu,cpuacct:/cpu:weird:path\n0::/": "/m",
		"3:cpu,cpuacct:/c\n0::/\n":                                           "/c",
		"9:name=systemd:/user.slice\n0::/\n":                                 "/user.slice",
		"0::/\n":                                                             "/",
		"garbage\n":                                                          "",
	}
	for in, want := range cases {
		if got := ParseCgroupFile([]byte(in)); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// fakeProc builds a /proc tree for one pid whose values the test knows.
func fakeProc(t *testing.T, pid int, start uint64) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "stat"), fmt.Sprintf("%d (sh) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, start))
	for i, kind := range NamespaceKinds {
		if err := os.Symlink(fmt.Sprintf("%s:[%d]", kind, 4026530000+i), filepath.Join(dir, "ns", kind)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "cgroup"), "4:memory:/karmor/test\n0::/\n")
	writeFile(t, filepath.Join(root, "uptime"), "1000.00 1900.00\n")
	return root
}

func TestReadProcFake(t *testing.T) {
	root := fakeProc(t, 4242, 12345)
	c := agentapi.Container{CgroupPath: "/from/config"}
	if err := ReadProc(root, 4242, &c); err != nil {
		t.Fatal(err)
	}
	if c.PIDStart != 12345 {
		t.Errorf("PIDStart %d", c.PIDStart)
	}
	for i, kind := range NamespaceKinds {
		if c.Namespaces[kind] != uint64(4026530000+i) {
			t.Errorf("namespace %s = %d", kind, c.Namespaces[kind])
		}
	}
	if c.CgroupPath != "/karmor/test" {
		t.Errorf("cgroup %q", c.CgroupPath)
	}
	// Booted 1000 s ago, started 123.45 s after boot: 876.55 s ago (to the 10 ms of /proc/uptime).
	if ago := time.Since(c.Created); ago < 876*time.Second || ago > 878*time.Second {
		t.Errorf("created %v, %v ago; want about 876.55s ago", c.Created, ago)
	}

	// A created time from the runtime is kept.
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c = agentapi.Container{Created: at}
	if err := ReadProc(root, 4242, &c); err != nil || !c.Created.Equal(at) {
		t.Errorf("created %v (%v), want %v kept", c.Created, err, at)
	}

	// A missing namespace is reported but the rest is still filled.
	if err := os.Remove(filepath.Join(root, "4242", "ns", "net")); err != nil {
		t.Fatal(err)
	}
	c = agentapi.Container{}
	err := ReadProc(root, 4242, &c)
	if err == nil || c.Namespaces["pid"] == 0 || c.Namespaces["net"] != 0 || c.PIDStart != 12345 {
		t.Errorf("partial read: err %v, %+v", err, c)
	}

	if err := ReadProc(root, 999, &c); err == nil {
		t.Error("absent pid: no error")
	}
	if err := ReadProc(root, 0, &c); err == nil {
		t.Error("pid 0: no error")
	}
}

func TestReadProcSelf(t *testing.T) {
	pid := os.Getpid()
	var c agentapi.Container
	if err := ReadProc("", pid, &c); err != nil {
		t.Fatal(err)
	}
	for _, kind := range NamespaceKinds {
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &st); err != nil {
			t.Fatal(err)
		}
		if c.Namespaces[kind] != st.Ino {
			t.Errorf("namespace %s: read %d, stat says %d", kind, c.Namespaces[kind], st.Ino)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if strconv.FormatUint(c.PIDStart, 10) != fields[19] {
		t.Errorf("PIDStart %d, stat field 22 %s", c.PIDStart, fields[19])
	}
	// This process started within the last hours; its derived created time must be near now.
	if d := time.Since(c.Created); d < -time.Second || d > 24*time.Hour {
		t.Errorf("created %v is %v from now", c.Created, d)
	}
	if n, err := CapLastCap(""); err != nil || n < 30 {
		t.Errorf("cap_last_cap %d, %v", n, err)
	}
}

func TestReadLibpodIdentity(t *testing.T) {
	store := t.TempDir()
	id := "2312f73a658b"
	bundle := filepath.Join(store, id, "userdata")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	// What Podman 4.3 writes (seen on this project's machines).
	writeFile(t, filepath.Join(store, "containers.json"), `[{"id":"other","names":["nope"]},{"id":"2312f73a658b","names":["web2"],"image":"bf6d","layer":"ae25","metadata":"{\"image-name\":\"localhost/busybox:test\",\"image-id\":\"bf6d\",\"name\":\"web2\",\"created-at\":1795648919}","created":"2026-11-25T23:21:59.084995452Z","flags":{"Volatile":true}}]`)
	c := agentapi.Container{ID: id, Bundle: bundle, Annotations: map[string]string{AnnotationManager: ManagerLibpod}}
	if err := ReadLibpodIdentity(&c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "web2" || c.Image != "localhost/busybox:test" {
		t.Fatalf("name %q image %q", c.Name, c.Image)
	}

	// Not Podman: nothing read.
	c = agentapi.Container{ID: id, Bundle: bundle}
	if err := ReadLibpodIdentity(&c); err != nil || c.Name != "" {
		t.Errorf("non-libpod container: %v %q", err, c.Name)
	}
	// A bundle not laid out as containers/storage's is refused.
	for _, b := range []string{filepath.Join(store, "elsewhere"), filepath.Join(store, "x", "userdata"), "rel/" + id + "/userdata", bundle + "/../" + id + "/userdata"} {
		c = agentapi.Container{ID: id, Bundle: b, Annotations: map[string]string{AnnotationManager: ManagerLibpod}}
		if err := ReadLibpodIdentity(&c); err == nil {
			t.Errorf("bundle %q accepted", b)
		}
	}
	// Unknown container, and a malformed index.
	c = agentapi.Container{ID: "zzz", Bundle: filepath.Join(store, "zzz", "userdata"), Annotations: map[string]string{AnnotationManager: ManagerLibpod}}
	if err := ReadLibpodIdentity(&c); err == nil {
		t.Error("unknown container: no error")
	}
	writeFile(t, filepath.Join(store, "containers.json"), `{"not":"a list"}`)
	c = agentapi.Container{ID: id, Bundle: bundle, Annotations: map[string]string{AnnotationManager: ManagerLibpod}}
	if err := ReadLibpodIdentity(&c); err == nil || c.Name != "" {
		t.Errorf("malformed index: %v %q", err, c.Name)
	}
}
