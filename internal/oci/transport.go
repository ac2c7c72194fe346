package oci

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/karmor/karmor/internal/readlimit"
	"github.com/karmor/karmor/internal/version"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// EnvPlainHTTP set to true makes every registry connection plain HTTP (the variable's
// name comes from kubearmor-client, where it means the same).
const EnvPlainHTTP = "KARMOR_OCI_TLS_INSECURE"

// maxCAFileSize bounds --ca-file: a bundle of every public CA is about 250 KiB.
const maxCAFileSize = 4 << 20

// TransportOptions says how to reach a registry and who to be there.
type TransportOptions struct {
	// PlainHTTP talks HTTP instead of HTTPS. $KARMOR_OCI_TLS_INSECURE=true sets it too.
	PlainHTTP bool
	// Insecure skips TLS certificate verification.
	Insecure bool
	// CAFile is a PEM bundle trusted in addition to the system's roots.
	CAFile string

	// Username and Password, when Username is set, are the credentials for the
	// reference's registry. Otherwise credentials come from Docker's configuration.
	Username string
	Password string
	// DockerConfig is the path of a Docker config.json; empty means
	// $DOCKER_CONFIG/config.json or ~/.docker/config.json. Its auths, credsStore and
	// credHelpers are honoured, so `docker login` is enough.
	DockerConfig string
	// DockerConfigJSON, when set, is the content of a Docker config.json held in memory (a
	// Kubernetes dockerconfigjson Secret): only its auths are read, credential helpers are not
	// run. It wins over DockerConfig and is never written to disk.
	DockerConfigJSON []byte

	// Retry bounds retries of 429, 5xx and timeouts; zero values take defaults.
	Retry RetryOptions
	// ResponseTimeout bounds the wait for a response's headers (default 60s).
	ResponseTimeout time.Duration
	// Concurrency is the number of connections kept per host (default DefaultConcurrency).
	Concurrency int
}

// RetryOptions bounds the exponential backoff used for 429, 5xx and network timeouts.
type RetryOptions struct {
	MaxRetries int           // default 5
	MinWait    time.Duration // default 200ms
	MaxWait    time.Duration // default 3s
}

func (o RetryOptions) policy() retry.Policy {
	p := &retry.GenericPolicy{
		Retryable: retry.DefaultPredicate,
		Backoff:   retry.DefaultBackoff,
		MinWait:   200 * time.Millisecond,
		MaxWait:   3 * time.Second,
		MaxRetry:  5,
	}
	if o.MaxRetries > 0 {
		p.MaxRetry = o.MaxRetries
	}
	if o.MinWait > 0 {
		p.MinWait = o.MinWait
	}
	if o.MaxWait > 0 {
		p.MaxWait = o.MaxWait
	}
	if p.MaxWait < p.MinWait {
		p.MaxWait = p.MinWait
	}
	if o.MinWait > 0 && o.MinWait < 50*time.Millisecond {
		// Short waits are for tests; the default backoff's 250ms base would dominate them.
		p.Backoff = retry.ExponentialBackoff(o.MinWait, 2, 0.1)
	}
	return p
}

// NewRepository returns a client for ref's repository, with TLS, proxy
// ($HTTPS_PROXY, $NO_PROXY), retries and credentials set up from opts.
func NewRepository(ref Reference, opts TransportOptions) (*remote.Repository, error) {
	plainHTTP, err := plainHTTPFromEnv(opts.PlainHTTP)
	if err != nil {
		return nil, err
	}
	transport, err := newHTTPTransport(opts)
	if err != nil {
		return nil, err
	}
	credential, err := credentialFunc(ref, opts)
	if err != nil {
		return nil, err
	}
	policy := opts.Retry.policy()
	client := &auth.Client{
		Client: &http.Client{Transport: &retry.Transport{
			Base:   transport,
			Policy: func() retry.Policy { return policy },
		}},
		Cache:      auth.NewCache(),
		Credential: credential,
	}
	client.SetUserAgent("karmor/" + version.String())

	repo := &remote.Repository{
		Client:           client,
		Reference:        ref.orasReference(),
		PlainHTTP:        plainHTTP,
		MaxMetadataBytes: DefaultMaxManifestSize,
	}
	if err := repo.Reference.ValidateRepository(); err != nil {
		return nil, fmt.Errorf("invalid repository %q: %w", ref.Name(), err)
	}
	return repo, nil
}

func plainHTTPFromEnv(flag bool) (bool, error) {
	v, ok := os.LookupEnv(EnvPlainHTTP)
	if !ok || v == "" {
		return flag, nil
	}
	env, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", EnvPlainHTTP, v)
	}
	return flag || env, nil
}

func newHTTPTransport(opts TransportOptions) (*http.Transport, error) {
	conns := opts.Concurrency
	if conns <= 0 {
		conns = DefaultConcurrency
	}
	responseTimeout := opts.ResponseTimeout
	if responseTimeout <= 0 {
		responseTimeout = 60 * time.Second
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: opts.Insecure} //nolint:gosec // the user asked for --insecure
	if opts.CAFile != "" {
		pool, err := certPoolWith(opts.CAFile)
		if err != nil {
			return nil, err
		}
		tlsConfig.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: responseTimeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   conns,
	}, nil
}

// certPoolWith returns the system roots plus the certificates in caFile.
func certPoolWith(caFile string) (*x509.CertPool, error) {
	pem, err := readlimit.File(caFile, maxCAFileSize)
	if err != nil {
		return nil, fmt.Errorf("read --ca-file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// credentialFunc returns the explicit credentials for ref's registry, or Docker's.
func credentialFunc(ref Reference, opts TransportOptions) (auth.CredentialFunc, error) {
	if opts.Username != "" {
		if opts.Password == "" {
			return nil, errors.New("a username needs a password: pass -p/--password or --password-stdin")
		}
		return auth.StaticCredential(ref.APIHost(), auth.Credential{Username: opts.Username, Password: opts.Password}), nil
	}
	if opts.Password != "" {
		return nil, errors.New("a password needs a username: pass -u/--username")
	}
	if opts.DockerConfigJSON != nil {
		return dockerConfigCredential(opts.DockerConfigJSON)
	}
	var store *credentials.DynamicStore
	var err error
	if opts.DockerConfig != "" {
		store, err = credentials.NewStore(opts.DockerConfig, credentials.StoreOptions{})
	} else {
		store, err = credentials.NewStoreFromDocker(credentials.StoreOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("read Docker credentials (config.json): %w; fix or move the file, or pass -u/-p", err)
	}
	return credentials.Credential(store), nil
}
