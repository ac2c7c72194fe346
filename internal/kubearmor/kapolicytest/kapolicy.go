// Package kapolicytest stands in for KubeArmor's gRPC PolicyService (non-Kubernetes mode) in
// tests, where the real KubeArmor cannot be used: restarted at will with chosen saved policies,
// and in every `go test` run without root or a built KubeArmor. It imitates what karmord's
// policy feed relies on in KubeArmor/core (unorchestratedUpdates.go, kubeUpdate.go): policies
// held by name per service and saved by name in one place for both services, restored by a
// restart; an ADDED for a held name replaces it; a DELETED of a name not held answers NotExist;
// a container policy without matchLabels, or with kubearmor.io/container.name beside other
// labels, is Invalid. The feed's tests against the real KubeArmor are in internal/kubearmor
// (policies_kubearmor_test.go).
package kapolicytest

import (
	"context"
	"encoding/json"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/karmor/karmor/internal/kubearmor/kapb"
)

// The services, as karmord's feed names them.
const (
	Container = "containerPolicy"
	Host      = "hostPolicy"
)

// Saved is one policy as the stand-in saves it (KubeArmor's /opt/kubearmor/policies/NAME.yaml).
type Saved struct {
	Service string
	Object  json.RawMessage
}

// Service is the stand-in PolicyService.
type Service struct {
	kapb.UnimplementedPolicyServiceServer
	mu    sync.Mutex
	held  map[string]map[string]json.RawMessage // service -> name -> object
	saved map[string]Saved                      // name -> last saved
	calls int
}

// New returns a stand-in that starts with the saved policies restored, as KubeArmor does.
func New(saved map[string]Saved) *Service {
	s := &Service{held: map[string]map[string]json.RawMessage{Container: {}, Host: {}}, saved: map[string]Saved{}}
	for name, p := range saved {
		s.saved[name] = p
		s.held[p.Service][name] = p.Object
	}
	return s
}

type event struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

type object struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
	} `json:"spec"`
}

func (s *Service) handle(service string, req *kapb.Policy) *kapb.Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	var ev event
	var obj object
	if json.Unmarshal(req.GetPolicy(), &ev) != nil || json.Unmarshal(ev.Object, &obj) != nil || obj.Metadata.Name == "" {
		return &kapb.Response{Status: kapb.PolicyStatus_Invalid}
	}
	if service == Container {
		labels := obj.Spec.Selector.MatchLabels
		if _, named := labels["kubearmor.io/container.name"]; len(labels) == 0 || named && len(labels) > 1 {
			return &kapb.Response{Status: kapb.PolicyStatus_Invalid}
		}
	}
	name := obj.Metadata.Name
	if ev.Type == "DELETED" {
		if _, ok := s.held[service][name]; !ok {
			return &kapb.Response{Status: kapb.PolicyStatus_NotExist}
		}
		delete(s.held[service], name)
		delete(s.saved, name)
		return &kapb.Response{Status: kapb.PolicyStatus_Deleted}
	}
	s.held[service][name] = ev.Object
	s.saved[name] = Saved{service, ev.Object}
	return &kapb.Response{Status: kapb.PolicyStatus_Applied}
}

// Restore adds saved policies as KubeArmor's restore at start does, which runs while KubeArmor
// already serves gRPC: a test calls it after the first calls to play a late restore.
func (s *Service) Restore(saved map[string]Saved) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, p := range saved {
		s.saved[name] = p
		s.held[p.Service][name] = p.Object
	}
}

// ContainerPolicy implements PolicyService.
func (s *Service) ContainerPolicy(_ context.Context, req *kapb.Policy) (*kapb.Response, error) {
	return s.handle(Container, req), nil
}

// HostPolicy implements PolicyService.
func (s *Service) HostPolicy(_ context.Context, req *kapb.Policy) (*kapb.Response, error) {
	return s.handle(Host, req), nil
}

// Names returns SERVICE/NAME of every policy held, sorted.
func (s *Service) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for svc, m := range s.held {
		for n := range m {
			out = append(out, svc+"/"+n)
		}
	}
	slices.Sort(out)
	return out
}

// Object returns the object held under service and name, nil when none.
func (s *Service) Object(service, name string) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[service][name]
}

// SavedCopy returns what a restart would restore.
func (s *Service) SavedCopy() map[string]Saved {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.saved)
}

// Calls counts the calls answered.
func (s *Service) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Serve serves svc on addr ("127.0.0.1:0" for any port) until stop is called or the test ends,
// and returns the address.
func Serve(t testing.TB, addr string, svc *Service) (string, func()) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 100 { // the port of a stand-in just stopped may take a moment to be free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	kapb.RegisterPolicyServiceServer(srv, svc)
	go func() { _ = srv.Serve(ln) }()
	var once sync.Once
	stop := func() { once.Do(srv.Stop) }
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}
