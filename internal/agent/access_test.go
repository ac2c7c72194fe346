package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// peerBinary copies this test binary where a user other than root can execute it.
func peerBinary(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "agent.test")
	copyFile(t, os.Args[0], exe, 0o755)
	for _, d := range []string{filepath.Dir(exe), filepath.Dir(filepath.Dir(exe))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return exe
}

// runPeer runs the test binary as a plain client (see peerClient) under uid and gid, doing action
// (list or report), and returns what it printed.
func runPeer(t *testing.T, exe, sock, action string, uid, gid uint32) string {
	t.Helper()
	cmd := exec.Command(exe)
	cmd.Env = []string{peerClientEnv + "=" + sock, peerActionEnv + "=" + action}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as %d:%d: %v\n%s", uid, gid, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestAllowedPeersReachTheSocketReadOnly runs real clients as users other than root against real
// agents configured only with karmord's flags (no permissions set by hand): the peers that
// --allow-uid, --allow-gid and --socket-group admit can list but not send events, and the socket
// and its directory carry the permissions that make it so.
func TestAllowedPeersReachTheSocketReadOnly(t *testing.T) {
	testutil.RequireRoot(t)
	exe := peerBinary(t)
	const uid, gid, other = 4711, 4712, 4713
	for _, tc := range []struct {
		name             string
		edit             func(*Config)
		peerUID, peerGID uint32
		mode, dirMode    os.FileMode
		group            int // the socket's and its directory's group; -1: root's
	}{
		{"allowed by uid", func(c *Config) { c.AllowUIDs = []uint32{uid} }, uid, other, 0o666, 0o711, -1},
		{"allowed by gid", func(c *Config) { c.AllowGIDs = []uint32{gid} }, other, gid, 0o660, 0o710, gid},
		{"socket group", func(c *Config) { c.SocketGroup = "4712"; c.AllowGIDs = []uint32{gid} }, other, gid, 0o660, 0o710, gid},
		{"explicit mode", func(c *Config) { c.SocketMode = 0o666; c.AllowUIDs = []uint32{uid} }, uid, other, 0o666, 0o711, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			tc.edit(&cfg)
			// The socket's directory's parent stands for /run, which everyone may traverse.
			if err := os.Chmod(filepath.Dir(filepath.Dir(cfg.Socket)), 0o755); err != nil {
				t.Fatal(err)
			}
			a := runAgent(t, cfg)
			checkPerms(t, cfg.Socket, tc.mode, tc.group)
			checkPerms(t, filepath.Dir(cfg.Socket), tc.dirMode|os.ModeDir, tc.group)

			if got := runPeer(t, exe, cfg.Socket, "list", tc.peerUID, tc.peerGID); got != "ok 0" {
				t.Fatalf("admitted peer's list printed %q, want ok 0", got)
			}
			got := runPeer(t, exe, cfg.Socket, "report", tc.peerUID, tc.peerGID)
			if !strings.Contains(got, "read-only") || !strings.Contains(got, "only root and karmord's own uid") {
				t.Fatalf("admitted peer's event: %q, want a read-only refusal", got)
			}
			if n := a.containerCount(); n != 0 {
				t.Fatalf("a read-only peer's event reached the table (%d containers)", n)
			}
			if counter(t, a, "errors", errKindForbidden) != 1 {
				t.Fatal("the refused write was not counted")
			}
			// A peer the flags do not admit is still refused, though it reaches the socket.
			if tc.mode&0o002 != 0 {
				if got := runPeer(t, exe, cfg.Socket, "list", 4799, 4799); !strings.Contains(got, "permission denied") {
					t.Fatalf("unadmitted peer: %q, want permission denied", got)
				}
			}
			// Root still sends events.
			if _, err := client(cfg).Report(ctxT(t), hookStart("root1", 0, "r")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func checkPerms(t *testing.T, path string, mode os.FileMode, group int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModeDir | os.ModePerm); got != mode {
		t.Errorf("%s: mode %v, want %v", path, got, mode)
	}
	if group < 0 {
		group = 0
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != group {
		t.Errorf("%s: group %d, want %d", path, st.Gid, group)
	}
}

// TestFutureDatedEventsAreClamped: event times are the hook's, but karmord's clock bounds them. A
// start dated 2099 is still removed by its real stop, and a stop dated 2099 leaves no tombstone
// that blocks the id's next start or outlives its TTL.
func TestFutureDatedEventsAreClamped(t *testing.T) {
	cfg, logs := testConfig(t)
	a := runAgent(t, cfg)
	cl := client(cfg)
	future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)

	fake := hookStart("fake2099", 0, "fake")
	fake.Time = future
	if _, err := cl.Report(ctxT(t), fake); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Report(ctxT(t), hookStop("fake2099")); err != nil {
		t.Fatal(err)
	}
	if c, _ := cl.Get(ctxT(t), "fake2099"); c != nil {
		t.Fatal("a start dated 2099 survived its stop")
	}

	stop := hookStop("tomb2099")
	stop.Time = future
	if _, err := cl.Report(ctxT(t), stop); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Report(ctxT(t), hookStart("tomb2099", 0, "next")); err != nil {
		t.Fatal(err)
	}
	if c, _ := cl.Get(ctxT(t), "tomb2099"); c == nil {
		t.Fatal("a stop dated 2099 kept the id's next start out")
	}
	a.mu.Lock()
	for id, tb := range a.table.tombs {
		if tb.touched.After(time.Now().Add(maxClockSkew)) || tb.stoppedAt.After(time.Now().Add(maxClockSkew)) {
			t.Errorf("tombstone of %s is dated %v: it would never expire", id, tb.touched)
		}
	}
	a.table.pruneTombstones(time.Now().Add(cfg.TombstoneTTL+DefaultTombstoneTTL), DefaultTombstoneTTL, DefaultMaxTombstones)
	left := len(a.table.tombs)
	a.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d tombstones outlived their TTL", left)
	}
	if !strings.Contains(logs.String(), "event dated in the future") {
		t.Fatal("the clamped times were not logged")
	}
	if _, err := cl.Report(ctxT(t), &agentapi.Event{Kind: agentapi.KindStop, Container: agentapi.Container{ID: "tomb2099"}}); err != nil {
		t.Fatal(err)
	}
}

func TestResolveSocketPerms(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "mode dirMode gid" or an error's part
	}{
		{"default", Config{}, "600 700 -1"},
		{"allow uid", Config{AllowUIDs: []uint32{1000}}, "666 711 -1"},
		{"allow one gid", Config{AllowGIDs: []uint32{50}}, "660 710 50"},
		{"allow two gids", Config{AllowGIDs: []uint32{50, 51}}, "666 711 -1"},
		{"socket group", Config{SocketGroup: "60"}, "660 710 60"},
		{"socket group by name", Config{SocketGroup: "root"}, "660 710 0"},
		{"socket group and gid", Config{SocketGroup: "60", AllowGIDs: []uint32{60}}, "660 710 60"},
		{"explicit 0666", Config{SocketMode: 0o666}, "666 711 -1"},
		{"explicit 0600 with allow uid", Config{SocketMode: 0o600, AllowUIDs: []uint32{1000}}, "cannot let in"},
		{"group mode without group", Config{SocketMode: 0o660}, "--socket-group"},
		{"execute bit", Config{SocketMode: 0o755}, "no execute"},
		{"owner cannot write", Config{SocketMode: 0o466}, "owner's rw"},
		{"unknown group", Config{SocketGroup: "no-such-group-karmor"}, "--socket-group"},
	} {
		p, err := resolveSocketPerms(tc.cfg)
		got := fmt.Sprintf("%o %o %d", uint32(p.mode), uint32(p.dirMode), p.gid)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestExistingSocketDir: a directory karmord owns gets the search permission the socket needs
// (and keeps what it had); a directory anyone may write is never changed.
func TestExistingSocketDir(t *testing.T) {
	base := t.TempDir()
	own := filepath.Join(base, "own")
	if err := os.Mkdir(own, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := prepareSocketDir(own, socketPerms{mode: 0o666, dirMode: 0o711, gid: -1}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(own); fi.Mode().Perm() != 0o751 {
		t.Fatalf("own directory: %v, want 0751", fi.Mode().Perm())
	}
	shared := filepath.Join(base, "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o770); err != nil {
		t.Fatal(err)
	}
	// Group-writable, not world-writable: karmord owns it, so it may open it to others.
	if err := prepareSocketDir(shared, socketPerms{mode: 0o666, dirMode: 0o711, gid: -1}); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(base, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o1772); err != nil {
		t.Fatal(err)
	}
	err := prepareSocketDir(tmp, socketPerms{mode: 0o666, dirMode: 0o711, gid: -1})
	if err == nil || !strings.Contains(err.Error(), "does not own it") {
		t.Fatalf("world-writable directory: %v, want an error", err)
	}
	if fi, _ := os.Stat(tmp); fi.Mode().Perm() != 0o772 {
		t.Fatalf("world-writable directory changed to %v", fi.Mode().Perm())
	}
}
