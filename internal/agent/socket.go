package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// socketPerms is who may reach the socket through the file system: the socket's mode and group
// and its directory's. The peer-credential check (accessPolicy) then decides who is served.
type socketPerms struct {
	mode    os.FileMode // the socket's
	dirMode os.FileMode // its directory's: search (x) for whoever the socket's mode lets write
	gid     int         // the group of both; -1 leaves it alone
}

// resolveSocketPerms turns the socket flags into permissions. Without --socket-mode, the mode
// follows the allow lists, so that what they promise holds: 0600 when only root and karmord's
// user are admitted; 0660 with the group when --socket-group is given or one --allow-gid names
// the only admitted group; 0666 when --allow-uid names users (any local user reaches the socket,
// the peer-credential check refuses those not admitted).
func resolveSocketPerms(c Config) (socketPerms, error) {
	p := socketPerms{gid: -1}
	if c.SocketGroup != "" {
		gid, err := lookupGroup(c.SocketGroup)
		if err != nil {
			return p, err
		}
		p.gid = gid
	}
	switch {
	case c.SocketMode != 0:
		p.mode = c.SocketMode
	case len(c.AllowUIDs) > 0:
		p.mode = 0o666
	case p.gid >= 0:
		p.mode = 0o660
	case len(c.AllowGIDs) == 1:
		p.gid, p.mode = int(c.AllowGIDs[0]), 0o660
	case len(c.AllowGIDs) > 1:
		p.mode = 0o666
	default:
		p.mode = 0o600
	}
	if p.mode&^0o666 != 0 || p.mode&0o600 != 0o600 {
		return p, fmt.Errorf("--socket-mode %#o: want the owner's rw and no execute or special bits, e.g. 0600, 0660 or 0666", uint32(p.mode))
	}
	othersReach := p.mode&0o002 != 0
	groupReach := p.mode&0o020 != 0 && p.gid >= 0
	if (len(c.AllowUIDs) > 0 || len(c.AllowGIDs) > 0) && !othersReach && !groupReach {
		return p, fmt.Errorf("--allow-uid/--allow-gid admit peers that a socket of mode %#o cannot let in: "+
			"give --socket-group GROUP (mode 0660) with a group they are in, or --socket-mode 0666", uint32(p.mode))
	}
	if p.mode&0o060 != 0 && p.gid < 0 && !othersReach {
		return p, fmt.Errorf("--socket-mode %#o opens the socket to its group: give --socket-group too", uint32(p.mode))
	}
	p.dirMode = 0o700
	if p.mode&0o020 != 0 {
		p.dirMode |= 0o010
	}
	if othersReach {
		p.dirMode |= 0o001
	}
	return p, nil
}

// lookupGroup resolves a group name or number.
func lookupGroup(name string) (int, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return int(n), nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, fmt.Errorf("--socket-group %q: %w", name, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("--socket-group %q: gid %q: %w", name, g.Gid, err)
	}
	return gid, nil
}

// listenSocket listens on cfg's socket with the permissions its flags ask for.
func listenSocket(cfg Config) (*net.UnixListener, error) {
	perms, err := resolveSocketPerms(cfg)
	if err != nil {
		return nil, err
	}
	return listen(cfg.Socket, perms)
}

// listen prepares the socket path and listens on it: the directory is created (its parents
// 0700), a stale socket left by a dead agent is removed, and a live agent answering on the path
// is never displaced. The socket and its directory get perms (owned by the agent's user, root in
// production).
func listen(path string, perms socketPerms) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := prepareSocketDir(dir, perms); err != nil {
		return nil, err
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
	// The group first: until the mode opens the socket, only its owner can connect.
	err = nil
	if perms.gid >= 0 {
		err = os.Lchown(path, -1, perms.gid)
	}
	if err == nil {
		err = os.Chmod(path, perms.mode)
	}
	if err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("set socket %s to mode %#o: %w", path, uint32(perms.mode), err)
	}
	return ln, nil
}

// prepareSocketDir creates the socket's directory with perms, or, when it exists and karmord
// owns it, adds the search permission and group perms need (never removing any). A directory
// karmord does not own, or anyone may write (such as /tmp), is left alone: an error says so when
// it keeps the admitted peers out.
func prepareSocketDir(dir string, perms socketPerms) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create socket directory %s: %w", dir, err)
		}
		return setDirPerms(dir, perms.dirMode, perms.gid)
	}
	if err != nil {
		return fmt.Errorf("inspect socket directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("socket directory %s is not a directory", dir)
	}
	st := fi.Sys().(*syscall.Stat_t)
	have := fi.Mode().Perm()
	needOthers := perms.dirMode&0o001 != 0 && have&0o001 == 0
	needGroup := perms.dirMode&0o010 != 0 && have&0o001 == 0 && (have&0o010 == 0 || int(st.Gid) != perms.gid)
	if !needOthers && !needGroup {
		return nil
	}
	if int(st.Uid) != os.Geteuid() || have&0o002 != 0 {
		return fmt.Errorf("socket directory %s (mode %#o) keeps the peers --socket-mode/--socket-group admit out, and karmord does not own it or anyone may write it: "+
			"give it search permission (chmod o+x or g+x) or choose another --socket", dir, uint32(have))
	}
	gid := -1
	if needGroup && int(st.Gid) != perms.gid {
		gid = perms.gid
	}
	return setDirPerms(dir, have|perms.dirMode, gid)
}

func setDirPerms(dir string, mode os.FileMode, gid int) error {
	if gid >= 0 {
		if err := os.Lchown(dir, -1, gid); err != nil {
			return fmt.Errorf("set the group of socket directory %s: %w", dir, err)
		}
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("set socket directory %s to mode %#o: %w", dir, uint32(mode), err)
	}
	return nil
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

// mayWrite reports whether a peer may change karmord's state (send events): only root and
// karmord's own user. Hooks run as root; every other admitted peer only reads.
func (p accessPolicy) mayWrite(who peer) bool {
	return who.uid == 0 || who.uid == p.self
}
