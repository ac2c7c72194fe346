package registrytest

import (
	"fmt"
	"maps"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// Route kinds reported by Counter, from the distribution API path of a request.
const (
	RouteBase     = "base"     // GET /v2/
	RouteManifest = "manifest" // /v2/<name>/manifests/<reference>
	RouteBlob     = "blob"     // /v2/<name>/blobs/<digest>
	RouteUpload   = "upload"   // /v2/<name>/blobs/uploads/...
	RouteTags     = "tags"     // /v2/<name>/tags/list
	RouteToken    = "token"    // the token endpoint of AuthToken
	RouteOther    = "other"
)

// Counter counts requests by method and route kind. It is safe for concurrent use.
type Counter struct {
	mu     sync.Mutex
	counts map[string]int
}

// Wrap returns a handler that counts each request, then serves it with next.
func (c *Counter) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.add(r.Method, RouteOf(r.URL.Path))
		next.ServeHTTP(w, r)
	})
}

func (c *Counter) add(method, route string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[method+" "+route]++
}

// Count returns how many requests with method (any method when empty) hit route.
func (c *Counter) Count(method, route string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for key, v := range c.counts {
		m, r, _ := strings.Cut(key, " ")
		if r == route && (method == "" || m == method) {
			n += v
		}
	}
	return n
}

// Total returns the number of requests served.
func (c *Counter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.counts {
		n += v
	}
	return n
}

// Snapshot returns the counts keyed "METHOD route", e.g. "GET blob".
func (c *Counter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

// Reset forgets every count, so a test can measure one operation.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts = nil
}

// String lists the counts, e.g. "GET blob=3 HEAD manifest=1 (total 4)".
func (c *Counter) String() string {
	c.mu.Lock()
	keys := make([]string, 0, len(c.counts))
	total := 0
	for k, v := range c.counts {
		keys = append(keys, fmt.Sprintf("%s=%d", k, v))
		total += v
	}
	c.mu.Unlock()
	sort.Strings(keys)
	return fmt.Sprintf("%s (total %d)", strings.Join(keys, " "), total)
}

// RouteOf classifies a registry API path.
func RouteOf(path string) string {
	switch {
	case path == "/v2/" || path == "/v2":
		return RouteBase
	case path == "/token":
		return RouteToken
	case !strings.HasPrefix(path, "/v2/"):
		return RouteOther
	case strings.Contains(path, "/blobs/uploads"):
		return RouteUpload
	case strings.Contains(path, "/blobs/"):
		return RouteBlob
	case strings.Contains(path, "/manifests/"):
		return RouteManifest
	case strings.HasSuffix(path, "/tags/list"):
		return RouteTags
	default:
		return RouteOther
	}
}
