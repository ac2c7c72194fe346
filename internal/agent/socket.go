package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// listen prepares the socket path and listens on it: the directory is created 0700, a stale
// socket left by a dead agent is removed, and a live agent answering on the path is never
// displaced. The socket is made 0600 (owned by the agent's user, root in production).
func listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory %s: %w", dir, err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The agent removes the socket itself at shutdown, and only if it is still its own.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("restrict socket %s to its owner: %w", path, err)
	}
	return ln, nil
}

// removeStaleSocket removes a socket nobody listens on. A path that is not a socket, or a socket
// a live process answers on, is an error: the user must decide.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket: remove it or choose another --socket", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("another karmord is already listening on %s: stop it first, or give this one another --socket", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether an agent is listening on %s (%v): remove the socket if no karmord runs", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// removeOwnSocket removes the socket at shutdown unless another agent has replaced it since.
func removeOwnSocket(path string, own os.FileInfo) {
	if fi, err := os.Lstat(path); err == nil && own != nil && os.SameFile(fi, own) {
		os.Remove(path)
	}
}

// peer is who is at the other end of a connection, from SO_PEERCRED.
type peer struct {
	pid      int32
	uid, gid uint32
}

// peerCred reads the connecting process's credentials as the kernel recorded them at connect().
func peerCred(conn *net.UnixConn) (peer, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return peer{}, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return peer{}, err
	}
	if credErr != nil {
		return peer{}, fmt.Errorf("SO_PEERCRED: %w", credErr)
	}
	return peer{pid: cred.Pid, uid: cred.Uid, gid: cred.Gid}, nil
}

// accessPolicy decides which peers may talk to the agent: root, the agent's own user (who could
// read its memory anyway), and the configured extra users and groups.
type accessPolicy struct {
	self uint32
	uids map[uint32]bool
	gids map[uint32]bool
}

func newAccessPolicy(self uint32, uids, gids []uint32) accessPolicy {
	p := accessPolicy{self: self, uids: map[uint32]bool{}, gids: map[uint32]bool{}}
	for _, u := range uids {
		p.uids[u] = true
	}
	for _, g := range gids {
		p.gids[g] = true
	}
	return p
}

func (p accessPolicy) allows(who peer) bool {
	return who.uid == 0 || who.uid == p.self || p.uids[who.uid] || p.gids[who.gid]
}
