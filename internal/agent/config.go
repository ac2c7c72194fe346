package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/karmor/karmor/internal/dockerlabels"
	"github.com/karmor/karmor/internal/kubearmor"
	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/policysource"
	"github.com/karmor/karmor/internal/signing"
	"github.com/karmor/karmor/pkg/agentapi"
)

// Defaults for Config's fields; cmd/karmord shows them in its flags.
const (
	DefaultStateDir          = "/var/lib/karmor"
	DefaultProcRoot          = "/proc"
	DefaultReconcileInterval = 30 * time.Second
	DefaultSpoolScanInterval = time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 5 * time.Second
	DefaultMaxConns          = 8192
	DefaultEventRing         = 4096
	DefaultEventRingBytes    = 16 << 20
	DefaultWatchBuffer       = 1024
	DefaultTombstoneTTL      = time.Hour
	DefaultMaxTombstones     = 1 << 16
	DefaultPolicyInterval    = policysource.DefaultOCIInterval
)

// policyCacheDir is where, under StateDir, the last good content of each OCI policy source is
// kept so that a restart without the registry still enforces it.
const policyCacheDir = "policy-cache"

// kubeArmorPolicyLedger is the file, under StateDir, where the policy feed remembers the
// policies KubeArmor may hold because karmord sent them.
const kubeArmorPolicyLedger = "kubearmor-policies.json"

// DefaultRuntimeRoots are the state roots karmord reconciles with: runc's, containerd's runc
// namespaces (k8s.io, moby, default, ...) and crun's. Entries may be glob patterns.
func DefaultRuntimeRoots() []string {
	return []string{"/run/runc", "/run/containerd/runc/*", "/run/crun"}
}

// Config is everything karmord needs; the zero value of a field means its default.
type Config struct {
	// Socket is the unix socket karmord listens on; its directory is created 0700.
	Socket string
	// SpoolDir is where karmor-hook leaves the events it could not deliver.
	SpoolDir string
	// StateDir holds what the agent persists across restarts (the event sequence reservation).
	StateDir string
	// RuntimeRoots are the runtime state roots (runc: <root>/<id>/state.json, crun:
	// <root>/<id>/status) read, never written, to reconcile the table. Glob patterns are expanded at
	// each reconciliation, so namespaces created later are seen.
	RuntimeRoots []string
	// ProcRoot is /proc, or a directory shaped like it in tests.
	ProcRoot string

	// MetricsAddr, when set, serves Prometheus metrics at http://MetricsAddr/metrics. Only loopback
	// addresses are accepted unless MetricsAllowRemote is set, because the metrics name containers.
	MetricsAddr        string
	MetricsAllowRemote bool
	// HealthAddr, when set, serves only the probes, /healthz and /readyz (agent.Health as JSON;
	// 200 or 503), for Kubernetes. They name no container, so any address is accepted. The
	// metrics server serves them too.
	HealthAddr string

	// AllowUIDs and AllowGIDs admit peers other than root (and the agent's own uid), read-only:
	// they list, get, watch and ask about policies; only root and karmord's uid send events.
	AllowUIDs []uint32
	AllowGIDs []uint32
	// SocketGroup (a group name or number) becomes the group of the socket and its directory.
	// SocketMode is the socket's mode (0600, 0660, 0666); zero derives it from the allow lists and
	// SocketGroup so that the admitted peers can reach it (see resolveSocketPerms). The
	// directory gets the search permission the mode needs.
	SocketGroup string
	SocketMode  os.FileMode

	// ReconcileInterval is how often the table is compared with the runtimes' state and /proc.
	ReconcileInterval time.Duration
	// SpoolScanInterval is how often the spool directory is rescanned while running.
	SpoolScanInterval time.Duration
	// ReadTimeout bounds the wait for each request frame; WriteTimeout bounds each answer.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// MaxConns caps concurrent connections; beyond it a connection gets a "busy" error.
	MaxConns int
	// EventRing is how many recent events are kept for watchers resuming from a sequence number.
	EventRing int
	// EventRingBytes bounds the ring's events in (estimated) bytes besides their number, and how
	// many bytes of events a watcher may fall behind by before it is dropped.
	EventRingBytes int
	// WatchBuffer is how many events a watcher may fall behind before it is dropped.
	WatchBuffer int
	// TombstoneTTL and MaxTombstones bound the memory of stopped containers kept to reject late
	// starts of the same container (spool replay racing live events).
	TombstoneTTL  time.Duration
	MaxTombstones int

	// PolicyDirs are directories of policy files, watched: a change is in force within about
	// half a second. PolicyRefs are OCI artifact references (a tag is followed, a digest pins),
	// polled every PolicyInterval (default 30 s, varied by ±10%) with PolicyTransport (TLS,
	// credentials, as `karmor oci`). Each source's last good policies stay in force when it
	// fails; an OCI source's are cached under StateDir.
	PolicyDirs      []string
	PolicyRefs      []string
	PolicyInterval  time.Duration
	PolicyTransport oci.TransportOptions
	// PolicyTrust, when it names keys or identities, admits only signed policy artifacts: a new
	// digest goes in force only when a trusted signature covers it. PolicyRefTrust replaces it
	// for the references it names (as given in PolicyRefs).
	PolicyTrust    *signing.Trust
	PolicyRefTrust map[string]*signing.Trust

	// KubeArmorSocket, when set, is KubeArmor's ka.sock: karmord sends it every container it
	// knows (internal/kubearmor), so that KubeArmor needs no runtime socket.
	KubeArmorSocket string
	// KubeArmorPolicyAddr, when set, is KubeArmor's gRPC address (HOST:PORT): karmord keeps the
	// policies KubeArmor enforces outside Kubernetes equal to the set in force
	// (internal/kubearmor), remembering what it sent under StateDir.
	KubeArmorPolicyAddr string

	// NodeName (default: the host name) and NodeLabels are the node as host policies see it.
	NodeName   string
	NodeLabels map[string]string

	// PodLabels, when set, gives the labels of a Kubernetes pod. It fills the labels of
	// containers that name a pod and namespace but carry no labels (containerd without NRI),
	// when karmord answers or matches them. It is called outside the table's lock, never on the
	// hook's path, possibly from several goroutines at once, and must return quickly (from a
	// cache). ok false means the pod is not known.
	PodLabels func(namespace, pod string) (labels map[string]string, ok bool)

	// ContainerLabels, when set, gives the labels of a Podman container, which Podman keeps out
	// of the OCI config and the hook's state (internal/podmanlabels reads them from libpod's
	// database). It is asked only about containers whose io.container.manager annotation is
	// "libpod" and that carry no labels, with the same contract as PodLabels: outside the table's
	// lock, never on the hook's path, possibly concurrently, quickly. The returned map is not
	// modified. ok false means the container is not known.
	ContainerLabels func(c *agentapi.Container) (labels map[string]string, ok bool)

	// DockerContainer, when set, gives the name, image and labels of a Docker container, which
	// dockerd keeps in its own record rather than in the OCI config (internal/dockerlabels). It
	// is asked about containers with a Docker-shaped ID, no pod and no name or labels, with the
	// same contract as ContainerLabels. ok false means the container is not Docker's or not known.
	DockerContainer func(id string) (dockerlabels.Container, bool)

	// Logger receives the agent's structured logs; slog.Default() when nil.
	Logger *slog.Logger
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Socket == "" {
		c.Socket = agentapi.DefaultSocket
	}
	if c.SpoolDir == "" {
		c.SpoolDir = agentapi.DefaultSpoolDir
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.RuntimeRoots == nil {
		c.RuntimeRoots = DefaultRuntimeRoots()
	}
	if c.ProcRoot == "" {
		c.ProcRoot = DefaultProcRoot
	}
	setDuration := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDuration(&c.ReconcileInterval, DefaultReconcileInterval)
	setDuration(&c.SpoolScanInterval, DefaultSpoolScanInterval)
	setDuration(&c.ReadTimeout, DefaultReadTimeout)
	setDuration(&c.WriteTimeout, DefaultWriteTimeout)
	setDuration(&c.TombstoneTTL, DefaultTombstoneTTL)
	setDuration(&c.PolicyInterval, DefaultPolicyInterval)
	if c.NodeName == "" {
		c.NodeName = DefaultNodeName()
	}
	setInt := func(n *int, def int) {
		if *n == 0 {
			*n = def
		}
	}
	setInt(&c.MaxConns, DefaultMaxConns)
	setInt(&c.EventRing, DefaultEventRing)
	setInt(&c.EventRingBytes, DefaultEventRingBytes)
	setInt(&c.WatchBuffer, DefaultWatchBuffer)
	setInt(&c.MaxTombstones, DefaultMaxTombstones)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate reports the first configuration mistake, phrased as what to change.
func (c Config) validate() error {
	for name, p := range map[string]string{"--socket": c.Socket, "--spool-dir": c.SpoolDir, "--state-dir": c.StateDir, "--proc-root": c.ProcRoot} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%s %q must be an absolute path", name, p)
		}
	}
	for _, r := range c.RuntimeRoots {
		if !filepath.IsAbs(r) {
			return fmt.Errorf("--runtime-root %q must be an absolute path", r)
		}
		if _, err := filepath.Match(r, ""); err != nil {
			return fmt.Errorf("--runtime-root %q is not a valid glob pattern: %w", r, err)
		}
	}
	for name, d := range map[string]time.Duration{"reconcile interval": c.ReconcileInterval, "spool scan interval": c.SpoolScanInterval,
		"read timeout": c.ReadTimeout, "write timeout": c.WriteTimeout, "tombstone TTL": c.TombstoneTTL, "--policy-interval": c.PolicyInterval} {
		if d < 0 {
			return fmt.Errorf("%s %v must be positive", name, d)
		}
	}
	for name, n := range map[string]int{"max connections": c.MaxConns, "event ring": c.EventRing, "event ring bytes": c.EventRingBytes, "watch buffer": c.WatchBuffer, "max tombstones": c.MaxTombstones} {
		if n < 0 {
			return fmt.Errorf("%s %d must be positive", name, n)
		}
	}
	if _, err := resolveSocketPerms(c); err != nil {
		return err
	}
	if c.KubeArmorPolicyAddr != "" {
		if err := kubearmor.CheckPolicyAddr(c.KubeArmorPolicyAddr); err != nil {
			return fmt.Errorf("--kubearmor-policy-addr %w", err)
		}
	}
	if err := checkNodeLabels(c.NodeLabels); err != nil {
		return err
	}
	if c.HealthAddr != "" {
		if _, _, err := net.SplitHostPort(c.HealthAddr); err != nil {
			return fmt.Errorf("--health-addr %q: want host:port, e.g. 0.0.0.0:9465: %w", c.HealthAddr, err)
		}
	}
	if c.MetricsAddr != "" && !c.MetricsAllowRemote {
		if err := checkLoopback(c.MetricsAddr); err != nil {
			return err
		}
	}
	return nil
}

// checkLoopback accepts host:port addresses that only the local machine can reach.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr %q: want host:port, e.g. 127.0.0.1:9464: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return errors.New("--metrics-addr " + addr + " is not a loopback address (127.0.0.1, ::1, localhost): " +
		"the metrics name containers; pass --metrics-allow-remote to serve them on other interfaces")
}

// maxSecretFileSize bounds a password file: a registry token is a few KiB at most.
const maxSecretFileSize = 64 << 10

// ReadSecretFile reads a password or token from a file (--registry-password-file), without its
// trailing newline.
func ReadSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return "", fmt.Errorf("password file %s: %w", path, err)
	}
	if len(data) > maxSecretFileSize {
		return "", fmt.Errorf("password file %s is larger than %d bytes: is it the right file?", path, maxSecretFileSize)
	}
	secret := strings.TrimRight(string(data), "\r\n")
	if secret == "" {
		return "", fmt.Errorf("password file %s is empty", path)
	}
	return secret, nil
}

// DefaultNodeName is $NODE_NAME (a DaemonSet's downward API), else the host name in lower case, as
// the kubelet names its node. Without either, host policies can still select by labels; the empty
// name selects nothing by kubearmor.io/hostname, which is the safe side.
func DefaultNodeName() string {
	if env := os.Getenv("NODE_NAME"); env != "" {
		return env
	}
	host, _ := os.Hostname()
	return strings.ToLower(host)
}

// PolicyTrust builds Config.PolicyTrust from files (the global trust: keys, identity, trusted
// root) and Config.PolicyRefTrust from REF=PUB pairs: a reference given keys of its own trusts
// those keys alone, with the global trusted root and transparency log requirement.
func PolicyTrust(files signing.TrustFiles, refKeys []string) (*signing.Trust, map[string]*signing.Trust, error) {
	global, err := files.Load()
	if err != nil {
		return nil, nil, err
	}
	perRef := map[string]*signing.Trust{}
	for _, pair := range refKeys {
		ref, path, ok := strings.Cut(pair, "=")
		if !ok || ref == "" || path == "" {
			return nil, nil, fmt.Errorf("--policy-ref-verify-key %q: want REF=PUBLIC-KEY-FILE", pair)
		}
		key, err := signing.LoadPublicKey(path)
		if err != nil {
			return nil, nil, fmt.Errorf("--policy-ref-verify-key %s: %w", ref, err)
		}
		t := perRef[ref]
		if t == nil {
			t = &signing.Trust{RequireTlog: files.RequireTlog, MaxSignatures: files.MaxSignatures}
			if global != nil {
				t.TrustedRoot = global.TrustedRoot
			}
			perRef[ref] = t
		}
		t.Keys = append(t.Keys, key)
	}
	for ref, t := range perRef {
		if err := t.Check(); err != nil {
			return nil, nil, fmt.Errorf("--policy-ref-verify-key %s: %w", ref, err)
		}
	}
	return global, perRef, nil
}
