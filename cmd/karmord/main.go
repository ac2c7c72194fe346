// Command karmord is karmor's node agent: it keeps the table of live containers from karmor-hook's
// events, the hook's spool and the runtimes' state, follows policy directories and OCI
// references, tells which policies apply to each container, and serves all that on a unix
// socket. The flags are all there is here; internal/agent does the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/karmor/karmor/internal/agent"
	"github.com/karmor/karmor/internal/dockerlabels"
	"github.com/karmor/karmor/internal/kubearmor"
	"github.com/karmor/karmor/internal/kubepods"
	"github.com/karmor/karmor/internal/logflags"
	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/podmanlabels"
	"github.com/karmor/karmor/internal/signing"
	"github.com/karmor/karmor/internal/version"
	"github.com/karmor/karmor/pkg/agentapi"
)

type usageError struct{ error }

func main() {
	cmd := newCommand(os.Stderr)
	err := cmd.Execute()
	var ue usageError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "karmord:", err)
		fmt.Fprintln(os.Stderr, "Run 'karmord --help' for usage.")
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "karmord:", err)
		os.Exit(1)
	}
}

func newCommand(logOut io.Writer) *cobra.Command {
	cfg := agent.Config{}
	var kube kubepods.Flags // pod labels from the Kubernetes API, off unless --kube-pod-labels
	var (
		logs                 logflags.Flags
		allowUIDs, allowGIDs []uint
		nodeLabels           []string
		nodeLabelsFile       string
		passwordFile         string
		podmanDB             string
		dockerRoot           string
		socketMode           string
		trustFiles           signing.TrustFiles
		refKeys              []string
	)
	cmd := &cobra.Command{
		Use:   "karmord",
		Short: "karmor's node agent: live containers from hooks, spool and runtime state, the policies that apply to them, and KubeArmor fed with both",
		Example: `  karmord --policy-dir /etc/karmor/policies
  karmord --policy-ref registry.example.com/team/policies:prod --policy-interval 1m --node-label zone=eu-1
  karmord --policy-ref localhost:5000/policies:dev --plain-http --registry-username ci --registry-password-file /run/secrets/registry
  karmord --policy-ref registry.example.com/team/policies:prod --kubearmor-socket /var/run/kubearmor/ka.sock --kubearmor-policy-addr 127.0.0.1:32767
  karmord --policy-ref registry.example.com/team/policies:prod --verify-key /etc/karmor/cosign.pub`,
		Version: version.String(),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("karmord takes no arguments, only flags (got %q)", args[0])}
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := logs.Logger(logOut)
			if err != nil {
				return usageError{err}
			}
			cfg.Logger = logger
			if cfg.AllowUIDs, err = ids("--allow-uid", allowUIDs); err != nil {
				return usageError{err}
			}
			if cfg.AllowGIDs, err = ids("--allow-gid", allowGIDs); err != nil {
				return usageError{err}
			}
			if cfg.SocketMode, err = fileMode(socketMode); err != nil {
				return usageError{err}
			}
			if cfg.NodeLabels, err = readNodeLabels(nodeLabelsFile, nodeLabels); err != nil {
				return usageError{err}
			}
			if (cfg.PolicyTransport.Username == "") != (passwordFile == "") {
				return usageError{errors.New("--registry-username and --registry-password-file go together")}
			}
			if passwordFile != "" {
				if cfg.PolicyTransport.Password, err = agent.ReadSecretFile(passwordFile); err != nil {
					return err
				}
			}
			if cfg.PolicyTrust, cfg.PolicyRefTrust, err = agent.PolicyTrust(trustFiles, refKeys); err != nil {
				return usageError{err}
			}
			if podmanDB != "" {
				podman, err := podmanlabels.Open(podmanlabels.Options{DBPath: podmanDB, Logger: cfg.Logger})
				if err != nil {
					return fmt.Errorf("--podman-db: %w", err)
				}
				cfg.ContainerLabels = func(c *agentapi.Container) (map[string]string, bool) { return podman.Labels(c.ID) }
			}
			if dockerRoot != "" {
				docker, err := dockerlabels.Open(dockerlabels.Options{Root: dockerRoot, Logger: cfg.Logger})
				if err != nil {
					return usageError{fmt.Errorf("--docker-root: %w", err)}
				}
				cfg.DockerContainer = docker.Lookup
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			kube.NodeName = cfg.NodeName
			if cfg.PodLabels, err = kube.Start(ctx, cfg.Logger); err != nil {
				return err
			}
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := cmd.Flags()
	f.StringVar(&cfg.Socket, "socket", agentapi.DefaultSocket, "unix socket to serve on (its directory is created 0700, plus the search permission --socket-mode needs)")
	f.StringVar(&socketMode, "socket-mode", "", "the socket's mode in octal: 0600, 0660 (with --socket-group) or 0666 (default: what the allow flags need: 0600 without them)")
	f.StringVar(&cfg.SocketGroup, "socket-group", "", "group (name or gid) of the socket and its directory, mode 0660: the group's members reach it")
	f.StringVar(&cfg.SpoolDir, "spool-dir", agentapi.DefaultSpoolDir, "directory where karmor-hook spools the events it could not deliver")
	f.StringVar(&cfg.StateDir, "state-dir", agent.DefaultStateDir, "directory for what karmord keeps across restarts")
	f.StringArrayVar(&cfg.RuntimeRoots, "runtime-root", agent.DefaultRuntimeRoots(), "runtime state root to reconcile with (repeatable, glob patterns allowed)")
	f.StringVar(&cfg.ProcRoot, "proc-root", agent.DefaultProcRoot, "the host's /proc")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (off when empty; loopback only)")
	f.StringVar(&cfg.HealthAddr, "health-addr", "", "serve the probes /healthz (live) and /readyz (ready) at http://ADDR (off when empty; any address: they name no container; the metrics server serves them too)")
	f.BoolVar(&cfg.MetricsAllowRemote, "metrics-allow-remote", false, "allow --metrics-addr on a non-loopback address")
	f.UintSliceVar(&allowUIDs, "allow-uid", nil, "also admit peers with this uid, read-only: list, get, watch, policies, explain (repeatable; the socket becomes 0666 unless --socket-mode/--socket-group say otherwise; root and karmord's own uid are always admitted and alone send events)")
	f.UintSliceVar(&allowGIDs, "allow-gid", nil, "also admit peers whose primary gid is this, read-only (repeatable; one gid alone becomes the socket's group, mode 0660)")
	f.DurationVar(&cfg.ReconcileInterval, "reconcile-interval", agent.DefaultReconcileInterval, "how often to reconcile with the runtimes' state and /proc")
	f.DurationVar(&cfg.SpoolScanInterval, "spool-scan-interval", agent.DefaultSpoolScanInterval, "how often to rescan the spool directory")
	f.IntVar(&cfg.MaxConns, "max-conns", agent.DefaultMaxConns, "maximum concurrent connections")
	f.StringArrayVar(&cfg.PolicyDirs, "policy-dir", nil, "directory of KubeArmor policy files to follow, watched for changes (repeatable)")
	f.StringArrayVar(&cfg.PolicyRefs, "policy-ref", nil, "OCI reference of a policy artifact to follow (as pushed by 'karmor oci push'), polled for new versions (repeatable)")
	f.DurationVar(&cfg.PolicyInterval, "policy-interval", agent.DefaultPolicyInterval, "time between polls of each --policy-ref (varied by ±10%)")
	f.BoolVar(&cfg.PolicyTransport.PlainHTTP, "plain-http", false, "talk plain HTTP to registries, not HTTPS (also: "+oci.EnvPlainHTTP+"=true)")
	f.BoolVar(&cfg.PolicyTransport.Insecure, "insecure", false, "use TLS without verifying registries' certificates")
	f.StringVar(&cfg.PolicyTransport.CAFile, "ca-file", "", "PEM file of a CA to trust for registries' certificates")
	f.StringVar(&cfg.PolicyTransport.DockerConfig, "registry-config", "", "Docker config.json with registry credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	f.StringVar(&cfg.PolicyTransport.Username, "registry-username", "", "registry user name (with --registry-password-file; default: credentials from the Docker config)")
	f.StringVar(&passwordFile, "registry-password-file", "", "file holding the registry password or token")
	f.StringArrayVar(&trustFiles.KeyFiles, "verify-key", nil, "public key (PEM, e.g. cosign.pub) whose signature every --policy-ref needs before it goes in force (repeatable: any one suffices)")
	f.StringVar(&trustFiles.Identity.Subject, "certificate-identity", "", "keyless: the signer identity (certificate SAN) every --policy-ref needs")
	f.StringVar(&trustFiles.Identity.SubjectRegexp, "certificate-identity-regexp", "", "keyless: a regular expression the signer identity must match")
	f.StringVar(&trustFiles.Identity.Issuer, "certificate-oidc-issuer", "", "keyless: the OIDC issuer that vouched for the identity")
	f.StringVar(&trustFiles.Identity.IssuerRegexp, "certificate-oidc-issuer-regexp", "", "keyless: a regular expression the OIDC issuer must match")
	f.StringVar(&trustFiles.TrustedRootFile, "trusted-root", "", "Sigstore trusted_root.json for keyless signatures and transparency log keys (read once; nothing is fetched)")
	f.StringArrayVar(&trustFiles.NotationCertFiles, "notation-cert", nil, "PEM CA certificate that notation signatures of every --policy-ref may chain to (repeatable)")
	f.BoolVar(&trustFiles.RequireTlog, "require-tlog", false, "refuse signatures without a transparency log entry proven against the trusted root")
	f.StringArrayVar(&refKeys, "policy-ref-verify-key", nil, "REF=PUB: trust this key, instead of the global --verify-key and identity, for the --policy-ref REF (repeatable)")
	f.StringVar(&cfg.KubeArmorSocket, "kubearmor-socket", "", "send every container to KubeArmor's ka.sock (KubeArmor run with -useOCIHooks; its path is "+kubearmor.DefaultSocket+"); off when empty")
	f.StringVar(&cfg.KubeArmorPolicyAddr, "kubearmor-policy-addr", "", "keep the policies KubeArmor enforces outside Kubernetes equal to the set in force, through its gRPC PolicyService at HOST:PORT (KubeArmor's is "+kubearmor.DefaultPolicyAddr+"); off when empty")
	f.StringVar(&cfg.NodeName, "node-name", "", "node name host policies see as kubearmor.io/hostname (default: $NODE_NAME, else the host name)")
	f.StringArrayVar(&nodeLabels, "node-label", nil, "node label KEY=VALUE for host policies' nodeSelector (repeatable; wins over --node-labels-file)")
	f.StringVar(&nodeLabelsFile, "node-labels-file", "", "file of node labels: KEY=VALUE lines or a JSON object")
	f.StringVar(&podmanDB, "podman-db", podmanlabels.DefaultDBPath, "libpod's BoltDB state database, read (never written) for Podman containers' labels (\"\" turns this off; Podman 5's SQLite state is not read)")
	f.StringVar(&dockerRoot, "docker-root", dockerlabels.DefaultRoot, "dockerd's data root, whose containers/<id>/config.v2.json give Docker containers their name and labels (read, never written; \"\" turns this off)")
	logs.Register(f)
	kube.Register(f)
	cmd.SetContext(context.Background())
	return cmd
}

// readNodeLabels reads the labels file, if any, then the --node-label flags over it.
func readNodeLabels(file string, flags []string) (map[string]string, error) {
	labels := map[string]string{}
	if file != "" {
		fromFile, err := agent.ReadNodeLabelsFile(file)
		if err != nil {
			return nil, err
		}
		maps.Copy(labels, fromFile)
	}
	fromFlags, err := agent.ParseNodeLabels(flags)
	if err != nil {
		return nil, fmt.Errorf("--node-label: %w", err)
	}
	maps.Copy(labels, fromFlags)
	return labels, nil
}

// fileMode parses --socket-mode: octal, "" for the default.
func fileMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m == 0 || m > 0o777 {
		return 0, fmt.Errorf("--socket-mode %q: want an octal mode such as 0660", s)
	}
	return os.FileMode(m), nil
}

func ids(flag string, in []uint) ([]uint32, error) {
	out := make([]uint32, 0, len(in))
	for _, v := range in {
		if v > math.MaxUint32 {
			return nil, fmt.Errorf("%s %d is out of range", flag, v)
		}
		out = append(out, uint32(v))
	}
	return out, nil
}
