package kubepods

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/karmor/karmor/internal/testutil"
)

// apiServer is a small stand-in for kube-apiserver's pod endpoints over real HTTP: list, watch and
// streaming list (sendInitialEvents), filtered by field selector as the real one does.
type apiServer struct {
	t      *testing.T
	pods   []corev1.Pod
	status int // when not 0, every request fails with this status
	// noStreamingList refuses sendInitialEvents, as API servers before Kubernetes 1.32 may.
	noStreamingList bool

	mu        sync.Mutex
	selectors []string
	kinds     []string        // "list", "watch" or "streaming list", one per request
	events    chan watchEvent // sent to every open watch, for the tests to change pods later
}

type watchEvent struct {
	Type   string      `json:"type"`
	Object *corev1.Pod `json:"object"`
}

func newAPIServer(t *testing.T, pods ...corev1.Pod) (*apiServer, *httptest.Server) {
	s := &apiServer{t: t, pods: pods, events: make(chan watchEvent, 16)}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.status)
		fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods is forbidden: test","reason":"Forbidden","code":%d}`, s.status)
		return
	}
	if r.URL.Path != "/api/v1/pods" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	selector, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	kind := "list"
	if q.Get("watch") == "true" {
		kind = "watch"
		if q.Get("sendInitialEvents") == "true" {
			kind = "streaming list"
		}
	}
	s.mu.Lock()
	s.selectors = append(s.selectors, q.Get("fieldSelector"))
	s.kinds = append(s.kinds, kind)
	s.mu.Unlock()
	if kind == "streaming list" && s.noStreamingList {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"sendInitialEvents is forbidden","reason":"Invalid","code":422}`)
		return
	}
	var matching []corev1.Pod
	for _, p := range s.pods {
		if selector.Matches(fields.Set{"metadata.name": p.Name, "metadata.namespace": p.Namespace, "spec.nodeName": p.Spec.NodeName}) {
			p.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
			matching = append(matching, p)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if kind == "list" {
		list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, ListMeta: metav1.ListMeta{ResourceVersion: "10"}, Items: matching}
		if err := json.NewEncoder(w).Encode(list); err != nil {
			s.t.Errorf("api server: write list: %v", err)
		}
		return
	}
	enc := json.NewEncoder(w)
	send := func(e watchEvent) bool {
		if err := enc.Encode(e); err != nil {
			return false
		}
		w.(http.Flusher).Flush()
		return true
	}
	if kind == "streaming list" {
		for i := range matching {
			if !send(watchEvent{Type: "ADDED", Object: &matching[i]}) {
				return
			}
		}
		bookmark := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{ResourceVersion: "10", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}},
		}
		if !send(watchEvent{Type: "BOOKMARK", Object: bookmark}) {
			return
		}
	} else {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case e := <-s.events:
			e.Object.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
			if !send(e) {
				return
			}
		}
	}
}

func (s *apiServer) seen() (selectors, kinds []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.selectors...), append([]string(nil), s.kinds...)
}

func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
users:
- name: test
  user:
    token: test-token
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`, server)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Both ways client-go fills the cache are exercised: the streaming list of current API servers and,
// where that is refused, a list followed by a watch.
func TestFlagsStartOverHTTP(t *testing.T) {
	for _, streaming := range []bool{true, false} {
		t.Run(fmt.Sprintf("streaming-list=%v", streaming), func(t *testing.T) {
			api, srv := newAPIServer(t,
				*pod("shop", "web-1", thisNode, map[string]string{"app": "web"}),
				*pod("shop", "db-1", otherNode, map[string]string{"app": "db"}),
			)
			api.noStreamingList = !streaming
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f := Flags{Enabled: true, Kubeconfig: writeKubeconfig(t, srv.URL), NodeName: thisNode, SyncWait: deadline}
			lookup, err := f.Start(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Start waited for the first list, so the answer is there at once.
			if labels, ok := lookup("shop", "web-1"); !ok || labels["app"] != "web" {
				t.Errorf("lookup(shop, web-1) = %v, %v; want app=web, true", labels, ok)
			}
			if labels, ok := lookup("shop", "db-1"); ok {
				t.Errorf("lookup(shop, db-1) on %s = %v, true; want false", otherNode, labels)
			}

			eventually(t, "no watch is open to send changes on", func() bool {
				_, kinds := api.seen()
				return slices.Contains(kinds, "watch") || (streaming && slices.Contains(kinds, "streaming list"))
			})
			api.events <- watchEvent{Type: "MODIFIED", Object: pod("shop", "web-1", thisNode, map[string]string{"app": "web", "v": "2"})}
			eventually(t, "the label change sent on the watch did not arrive", func() bool {
				labels, _ := lookup("shop", "web-1")
				return labels["v"] == "2"
			})
			api.events <- watchEvent{Type: "DELETED", Object: pod("shop", "web-1", thisNode, nil)}
			eventually(t, "the deletion sent on the watch did not arrive", func() bool {
				_, ok := lookup("shop", "web-1")
				return !ok
			})

			selectors, kinds := api.seen()
			wantFirst := "streaming list"
			if !streaming {
				wantFirst = "list"
			}
			if !slices.Contains(kinds, wantFirst) {
				t.Errorf("requests were %q; want a %s among them", kinds, wantFirst)
			}
			for _, s := range selectors {
				if s != "spec.nodeName="+thisNode {
					t.Errorf("a request carried fieldSelector %q; want spec.nodeName=%s (all: %q)", s, thisNode, selectors)
				}
			}
		})
	}
}

func TestFlagsStartGoesOnWhenTheAPIRefuses(t *testing.T) {
	api, srv := newAPIServer(t, *pod("shop", "web-1", thisNode, map[string]string{"app": "web"}))
	api.status = http.StatusForbidden
	var logs testutil.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A short wait keeps the test quick; what is checked is that Start returns and says why.
	f := Flags{Enabled: true, Kubeconfig: writeKubeconfig(t, srv.URL), NodeName: thisNode, SyncWait: 200 * time.Millisecond}
	lookup, err := f.Start(ctx, logger)
	if err != nil {
		t.Fatal(err)
	}
	if labels, ok := lookup("shop", "web-1"); ok {
		t.Errorf("lookup answered %v without the API", labels)
	}
	if out := logs.String(); !strings.Contains(out, "has not arrived") {
		t.Errorf("no warning that the first list is missing; log:\n%s", out)
	}
	eventually(t, "the API's refusal is not in karmord's log", func() bool {
		return strings.Contains(logs.String(), "forbidden")
	})
}

func TestFlagsOffStartsNothing(t *testing.T) {
	f := Flags{Kubeconfig: "/nonexistent/kubeconfig"}
	lookup, err := f.Start(context.Background(), nil)
	if err != nil || lookup != nil {
		t.Errorf("Start with the feature off = %v, %v; want nil, nil", lookup != nil, err)
	}
}

func TestFlagsBadKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte("clusters: [not, a, kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kubeconfig := range []string{path, filepath.Join(t.TempDir(), "missing")} {
		f := Flags{Enabled: true, Kubeconfig: kubeconfig, NodeName: thisNode}
		lookup, err := f.Start(context.Background(), nil)
		if err == nil || lookup != nil || !strings.Contains(err.Error(), "--kubeconfig "+kubeconfig) {
			t.Errorf("Start with kubeconfig %s: err %v; want an error naming --kubeconfig and the file", kubeconfig, err)
		}
	}
}

func TestFlagsNoClusterFound(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
	t.Setenv("HOME", t.TempDir())
	f := Flags{Enabled: true, NodeName: thisNode}
	if _, err := f.Start(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "pass --kubeconfig") {
		t.Errorf("Start outside a cluster without kubeconfig: err %v; want advice to pass --kubeconfig", err)
	}
}

func TestFlagsNodeNameDefaults(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	host, err := os.Hostname()
	if err != nil {
		t.Fatalf("os.Hostname: %v", err)
	}
	if got, err := (&Flags{}).nodeName(); err != nil || got != strings.ToLower(host) {
		t.Errorf("node name without flag or $NODE_NAME = %q, %v; want the host name %q in lower case", got, err, host)
	}
	t.Setenv("NODE_NAME", "worker-7")
	if got, _ := (&Flags{}).nodeName(); got != "worker-7" {
		t.Errorf("node name from $NODE_NAME = %q; want worker-7", got)
	}
	if got, _ := (&Flags{NodeName: "worker-9"}).nodeName(); got != "worker-9" {
		t.Errorf("node name from the flag = %q; want worker-9", got)
	}
}

func TestFlagsRegister(t *testing.T) {
	var f Flags
	fs := pflag.NewFlagSet("karmord", pflag.ContinueOnError)
	f.Register(fs)
	if f.Enabled {
		t.Error("--kube-pod-labels is on by default")
	}
	if err := fs.Parse([]string{"--kube-pod-labels", "--kubeconfig", "/etc/k.conf"}); err != nil {
		t.Fatal(err)
	}
	if !f.Enabled || f.Kubeconfig != "/etc/k.conf" {
		t.Errorf("parsed flags = %+v", f)
	}
}
