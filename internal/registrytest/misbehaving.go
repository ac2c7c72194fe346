package registrytest

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

// MisbehavingOptions is what a Misbehaving registry serves, and how it breaks the rules.
type MisbehavingOptions struct {
	// Repository and Tag name the one artifact served; the manifest is also served by its digest.
	Repository string
	Tag        string
	// Manifest is served as-is with ManifestMediaType (default: OCI image manifest).
	Manifest          []byte
	ManifestMediaType string
	// Blobs maps a digest to the bytes served for it. The bytes need not hash to the
	// digest: that is how a test serves a blob with a wrong digest.
	Blobs map[digest.Digest][]byte

	// FailFirst answers the first FailFirst requests with FailStatus (e.g. 500, 429),
	// then behaves; a client with retries succeeds.
	FailFirst  int
	FailStatus int
	// TruncateBlobs announces each blob's full Content-Length, sends half of it and
	// drops the connection.
	TruncateBlobs bool
}

// Misbehaving is a hand-written registry that serves exactly MisbehavingOptions. It is a
// test peer for the client's safety checks, not a registry implementation.
type Misbehaving struct {
	Host string
	URL  string
	*Counter

	opts     MisbehavingOptions
	failures atomic.Int64
	server   *httptest.Server
}

// NewMisbehaving starts a misbehaving registry over plain HTTP for the test.
func NewMisbehaving(t testing.TB, opts MisbehavingOptions) *Misbehaving {
	t.Helper()
	if opts.ManifestMediaType == "" {
		opts.ManifestMediaType = MediaTypeImageManifest
	}
	m := &Misbehaving{Counter: &Counter{}, opts: opts}
	m.server = httptest.NewServer(m.Counter.Wrap(http.HandlerFunc(m.serve)))
	t.Cleanup(m.server.Close)
	m.URL = m.server.URL
	m.Host = strings.TrimPrefix(m.server.URL, "http://")
	return m
}

// Reference returns HOST/REPOSITORY:TAG.
func (m *Misbehaving) Reference() string {
	return m.Host + "/" + m.opts.Repository + ":" + m.opts.Tag
}

// ManifestDigest returns the digest of the manifest bytes served.
func (m *Misbehaving) ManifestDigest() digest.Digest { return digest.FromBytes(m.opts.Manifest) }

func (m *Misbehaving) serve(w http.ResponseWriter, r *http.Request) {
	if m.failures.Add(1) <= int64(m.opts.FailFirst) {
		w.Header().Set("Retry-After", "0")
		http.Error(w, http.StatusText(m.opts.FailStatus), m.opts.FailStatus)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "read-only test registry", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/v2/" {
		w.WriteHeader(http.StatusOK)
		return
	}
	prefix := "/v2/" + m.opts.Repository + "/"
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case strings.HasPrefix(rest, "manifests/"):
		ref := strings.TrimPrefix(rest, "manifests/")
		if ref != m.opts.Tag && ref != m.ManifestDigest().String() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Docker-Content-Digest", m.ManifestDigest().String())
		m.write(w, r, m.opts.ManifestMediaType, m.opts.Manifest, false)
	case strings.HasPrefix(rest, "blobs/"):
		d := digest.Digest(strings.TrimPrefix(rest, "blobs/"))
		data, found := m.opts.Blobs[d]
		if !found {
			http.NotFound(w, r)
			return
		}
		m.write(w, r, "application/octet-stream", data, m.opts.TruncateBlobs)
	default:
		http.NotFound(w, r)
	}
}

func (m *Misbehaving) write(w http.ResponseWriter, r *http.Request, contentType string, data []byte, truncate bool) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if truncate {
		// Writing fewer bytes than announced makes net/http close the connection.
		_, _ = w.Write(data[:len(data)/2])
		return
	}
	_, _ = w.Write(data)
}
