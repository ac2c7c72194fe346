// Package registrytest runs OCI registries inside the test process: the real
// distribution/v3 registry (in-memory storage, optionally behind TLS, htpasswd basic
// auth or bearer-token auth) and a deliberately misbehaving registry that breaks the
// rules a client must defend against. Both count the requests they serve, so tests
// and benchmarks can assert what a client did on the wire.
package registrytest

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"

	// Registered by import: the storage driver and the access controllers the registry can use.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// Auth selects how the registry authenticates clients.
type Auth int

const (
	// AuthNone lets anyone push and pull.
	AuthNone Auth = iota
	// AuthBasic answers 401 with a Basic challenge and checks a bcrypt htpasswd file.
	AuthBasic
	// AuthToken answers 401 with a Bearer challenge; the token endpoint (served on the
	// same host at /token) checks the users with Basic auth and issues signed JWTs.
	AuthToken
)

// Options configures a real registry.
type Options struct {
	// TLS serves HTTPS with a self-signed certificate; Registry.CAFile is its CA in PEM.
	TLS bool
	// Auth is the authentication scheme; Users holds the accepted name -> password pairs.
	Auth  Auth
	Users map[string]string
	// Addr is the listen address; empty means 127.0.0.1 on a free port.
	Addr string
}

// Registry is a running distribution/v3 registry.
type Registry struct {
	// Host is host:port, usable in references ("HOST/repo:tag").
	Host string
	// URL is the base URL, http:// or https://.
	URL string
	// CAFile is the PEM file of the CA that signed the TLS certificate (TLS only).
	CAFile string
	// Counter counts every request the registry served.
	*Counter

	server  *httptest.Server
	app     *handlers.App
	tempDir string
}

// New starts a registry for the test and stops it when the test ends.
func New(t testing.TB, opts Options) *Registry {
	t.Helper()
	r, err := Start(opts)
	if err != nil {
		t.Fatalf("registrytest: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// Start starts a registry outside of a test (for benchmark programs); call Close when done.
func Start(opts Options) (*Registry, error) {
	quietRegistryLogs()
	tempDir, err := os.MkdirTemp("", "registrytest-")
	if err != nil {
		return nil, err
	}
	r := &Registry{Counter: &Counter{}, tempDir: tempDir}
	listener, err := listen(opts.Addr)
	if err != nil {
		r.Close()
		return nil, err
	}
	r.server = httptest.NewUnstartedServer(nil)
	r.server.Listener = listener
	scheme := "http"
	if opts.TLS {
		scheme = "https"
	}
	r.Host = listener.Addr().String()
	r.URL = scheme + "://" + r.Host

	config := &configuration.Configuration{
		Storage: configuration.Storage{
			"inmemory": configuration.Parameters{},
			"delete":   configuration.Parameters{"enabled": true},
		},
	}
	config.Log.AccessLog.Disabled = true
	config.HTTP.Secret = "registrytest-upload-secret"

	mux := http.NewServeMux()
	switch opts.Auth {
	case AuthNone:
	case AuthBasic:
		path := filepath.Join(tempDir, "htpasswd")
		if err := writeHtpasswd(path, opts.Users); err != nil {
			r.Close()
			return nil, err
		}
		config.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "registrytest", "path": path}}
	case AuthToken:
		issuer, err := newTokenIssuer(opts.Users)
		if err != nil {
			r.Close()
			return nil, err
		}
		jwks := filepath.Join(tempDir, "jwks.json")
		if err := os.WriteFile(jwks, issuer.jwks(), 0o600); err != nil {
			r.Close()
			return nil, err
		}
		config.Auth = configuration.Auth{"token": configuration.Parameters{
			"realm":   r.URL + "/token",
			"service": tokenService,
			"issuer":  tokenIssuerName,
			"jwks":    jwks,
		}}
		mux.Handle("/token", issuer)
	default:
		r.Close()
		return nil, fmt.Errorf("registrytest: unknown auth mode %d", opts.Auth)
	}

	r.app = handlers.NewApp(context.Background(), config)
	mux.Handle("/", r.app)
	r.server.Config.Handler = r.Counter.Wrap(mux)
	// Handshake failures are what TLS tests provoke on purpose; the client reports them.
	r.server.Config.ErrorLog = log.New(io.Discard, "", 0)
	if opts.TLS {
		r.server.StartTLS()
		if err := r.writeCA(); err != nil {
			r.Close()
			return nil, err
		}
	} else {
		r.server.Start()
	}
	return r, nil
}

// Close stops the registry and removes its files.
func (r *Registry) Close() {
	if r.server != nil && r.server.URL != "" {
		r.server.Close()
	}
	if r.app != nil {
		_ = r.app.Shutdown()
	}
	_ = os.RemoveAll(r.tempDir)
}

// Client returns an HTTP client that trusts the registry's certificate.
func (r *Registry) Client() *http.Client { return r.server.Client() }

func (r *Registry) writeCA() error {
	cert := r.server.Certificate()
	if cert == nil {
		return errors.New("registrytest: TLS server has no certificate")
	}
	r.CAFile = filepath.Join(r.tempDir, "ca.pem")
	return os.WriteFile(r.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600)
}

func listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("registrytest: listen on %s: %w", addr, err)
	}
	return l, nil
}

// writeHtpasswd writes users as a bcrypt htpasswd file, the only format distribution accepts.
func writeHtpasswd(path string, users map[string]string) error {
	if len(users) == 0 {
		return errors.New("registrytest: AuthBasic needs at least one user")
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	for name, password := range users {
		// MinCost keeps each login fast; the format is what matters here.
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			f.Close()
			return err
		}
		fmt.Fprintf(f, "%s:%s\n", name, hash)
	}
	return f.Close()
}

// quietRegistryLogs silences distribution's logrus output: tests print their own failures.
func quietRegistryLogs() {
	logrus.SetOutput(io.Discard)
	logrus.SetLevel(logrus.PanicLevel)
}
