package agent

import (
	"context"
	"fmt"
	"io"
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

// peerClientEnv makes the test binary act as a plain client instead of running tests: the peer
// credential test re-executes it under another uid.
const peerClientEnv = "KARMORD_TEST_PEER_CLIENT_SOCKET"

// peerActionEnv says what the plain client does: list (the default) or report (a start event).
const peerActionEnv = "KARMORD_TEST_PEER_ACTION"

func TestMain(m *testing.M) {
	if sock := os.Getenv(peerClientEnv); sock != "" {
		os.Exit(peerClient(sock))
	}
	os.Exit(m.Run())
}

// peerClient lists containers and prints "ok N" or "error: MSG"; with peerActionEnv=report it
// reports a start instead and prints "ok SEQ" or "error: MSG".
func peerClient(sock string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if os.Getenv(peerActionEnv) == "report" {
		seq, err := agentapi.NewClient(sock).Report(ctx, &agentapi.Event{Kind: agentapi.KindStart, Container: agentapi.Container{ID: "from-peer"}})
		if err != nil {
			fmt.Println("error:", err)
			return 0
		}
		fmt.Println("ok", seq)
		return 0
	}
	list, err := agentapi.NewClient(sock).List(ctx)
	if err != nil {
		fmt.Println("error:", err)
		return 0
	}
	fmt.Println("ok", len(list))
	return 0
}

func TestAccessPolicy(t *testing.T) {
	p := newAccessPolicy(1000, []uint32{2000}, []uint32{3000})
	for _, tc := range []struct {
		who  peer
		want bool
	}{
		{peer{uid: 0, gid: 5}, true},
		{peer{uid: 1000, gid: 5}, true}, // the agent's own user
		{peer{uid: 2000, gid: 5}, true},
		{peer{uid: 4000, gid: 3000}, true},
		{peer{uid: 4000, gid: 4000}, false},
		{peer{uid: 65534, gid: 65534}, false},
	} {
		if got := p.allows(tc.who); got != tc.want {
			t.Errorf("uid %d gid %d: allowed %v, want %v", tc.who.uid, tc.who.gid, got, tc.want)
		}
		if got, want := p.mayWrite(tc.who), tc.who.uid == 0 || tc.who.uid == 1000; got != want {
			t.Errorf("uid %d gid %d: may write %v, want %v", tc.who.uid, tc.who.gid, got, want)
		}
	}
}

// TestPeerCredentialsOfAnotherUser runs a real client as uid/gid 65534 (nobody) against real
// agents: refused by default, admitted by --allow-uid or --allow-gid.
func TestPeerCredentialsOfAnotherUser(t *testing.T) {
	testutil.RequireRoot(t)
	const nobody = 65534
	// The child must be able to execute a copy of this binary and reach the socket.
	exe := filepath.Join(t.TempDir(), "agent.test")
	copyFile(t, os.Args[0], exe, 0o755)
	for _, d := range []string{filepath.Dir(exe), filepath.Dir(filepath.Dir(exe))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name       string
		uids, gids []uint32
		want       string
	}{
		{"refused by default", nil, nil, "error: karmord: permission denied: uid 65534 (gid 65534) may not talk to karmord"},
		{"allowed by uid", []uint32{nobody}, nil, "ok 0"},
		{"allowed by gid", nil, []uint32{nobody}, "ok 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, logs := testConfig(t)
			cfg.AllowUIDs, cfg.AllowGIDs = tc.uids, tc.gids
			a := runAgent(t, cfg)
			// Open the way to the socket; the peer check is then the only gate.
			for _, p := range []string{filepath.Dir(filepath.Dir(cfg.Socket)), filepath.Dir(cfg.Socket)} {
				if err := os.Chmod(p, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(cfg.Socket, 0o666); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(exe)
			cmd.Env = []string{peerClientEnv + "=" + cfg.Socket}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("client as nobody: %v\n%s", err, out)
			}
			if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("client as nobody printed %q, want %q", got, tc.want)
			}
			rejected := counter(t, a, "connections", "rejected")
			if wantRejected := tc.uids == nil && tc.gids == nil; wantRejected != (rejected == 1) {
				t.Fatalf("rejected connections counted: %v", rejected)
			}
			if tc.uids == nil && tc.gids == nil && !strings.Contains(logs.String(), "peer not allowed") {
				t.Fatal("rejection not logged")
			}
		})
	}
}

func copyFile(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
