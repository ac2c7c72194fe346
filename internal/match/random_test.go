package match

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/karmor/karmor/pkg/agentapi"
	"github.com/karmor/karmor/pkg/policy"
)

// generator makes random but valid policies and containers from small pools of namespaces,
// labels and names, so that many pairs match and many do not.
type generator struct{ r *rand.Rand }

func newGenerator(seed uint64) generator { return generator{rand.New(rand.NewPCG(seed, 1))} }

func (g generator) ns() string    { return fmt.Sprintf("ns%d", g.r.IntN(20)) }
func (g generator) label() string { return fmt.Sprintf("k%d=v%d", g.r.IntN(8), g.r.IntN(3)) }
func (g generator) name() string  { return fmt.Sprintf("c%d", g.r.IntN(5)) }
func (g generator) chance(p float64) bool {
	return g.r.Float64() < p
}

func (g generator) labelExpressions(b *strings.Builder) {
	if g.chance(0.2) {
		fmt.Fprintf(b, "    - key: label\n      operator: In\n      values: [%s, %s]\n", g.label(), g.label())
	}
	if g.chance(0.15) {
		fmt.Fprintf(b, "    - key: label\n      operator: NotIn\n      values: [%s]\n", g.label())
	}
}

func (g generator) matchLabels(b *strings.Builder, max int) {
	seen := map[string]bool{}
	for range g.r.IntN(max + 1) {
		k, v, _ := strings.Cut(g.label(), "=")
		if !seen[k] {
			seen[k] = true
			fmt.Fprintf(b, "      %s: %s\n", k, v)
		}
	}
}

// policy returns one policy document as YAML.
func (g generator) policy(i int) string {
	var b strings.Builder
	kind := g.r.IntN(10)
	switch {
	case kind < 6:
		fmt.Fprintf(&b, "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: p%d\n  namespace: %s\nspec:\n  selector:\n    matchLabels:\n", i, g.ns())
		g.matchLabels(&b, 3)
		if g.chance(0.2) {
			fmt.Fprintf(&b, "      kubearmor.io/container.name: \"[%s, %s]\"\n", g.name(), g.name())
		}
		b.WriteString("    matchExpressions:\n")
		g.labelExpressions(&b)
	case kind < 8:
		fmt.Fprintf(&b, "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorClusterPolicy\nmetadata:\n  name: p%d\nspec:\n  selector:\n    matchExpressions:\n", i)
		if g.chance(0.3) {
			fmt.Fprintf(&b, "    - key: namespace\n      operator: In\n      values: [%s, %s]\n", g.ns(), g.ns())
		}
		if g.chance(0.2) {
			fmt.Fprintf(&b, "    - key: namespace\n      operator: NotIn\n      values: [%s]\n", g.ns())
		}
		g.labelExpressions(&b)
	case kind < 9:
		fmt.Fprintf(&b, "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorNetworkPolicy\nmetadata:\n  name: p%d\nspec:\n  selector:\n    matchLabels:\n", i)
		k, v, _ := strings.Cut(g.label(), "=")
		fmt.Fprintf(&b, "      %s: %s\n", k, v)
		b.WriteString("  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.0.0.0/8\n    limit: 1MB\n    duration: 1m\n")
		return b.String()
	default:
		fmt.Fprintf(&b, "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: p%d\nspec:\n  nodeSelector:\n    matchLabels:\n", i)
		g.matchLabels(&b, 2)
	}
	fmt.Fprintf(&b, "  process:\n    matchPaths:\n    - path: /bin/p%d\n  file:\n    matchDirectories:\n    - dir: /etc/\n      readOnly: true\n", i)
	return b.String()
}

func (g generator) set(t testing.TB, n int) *Set {
	t.Helper()
	var docs []policy.Document
	for i := range n {
		d := policy.ParseBytes(fmt.Sprintf("gen%d.yaml", i), []byte(g.policy(i)), policy.Options{})
		if err := policy.FirstError(d); err != nil {
			t.Fatalf("generated policy %d is invalid: %v\n%s", i, err, g.policy(i))
		}
		docs = append(docs, d...)
	}
	return NewSet(docs)
}

func (g generator) container(i int) agentapi.Container {
	c := agentapi.Container{ID: fmt.Sprintf("%064d", i), Labels: map[string]string{}}
	for range g.r.IntN(6) {
		k, v, _ := strings.Cut(g.label(), "=")
		c.Labels[k] = v
	}
	if g.chance(0.85) {
		c.Namespace, c.Pod, c.ContainerName = g.ns(), fmt.Sprintf("pod%d", i), g.name()
		return c
	}
	c.Name = g.name()
	if g.chance(0.5) {
		c.Annotations = map[string]string{}
		for range g.r.IntN(4) {
			k, v, _ := strings.Cut(g.label(), "=")
			c.Annotations[k] = v
		}
	}
	return c
}

// TestIndexAgreesWithFullScan checks the indexed Match, and Explain, against a plain check
// of every policy, on random policies and containers.
func TestIndexAgreesWithFullScan(t *testing.T) {
	g := newGenerator(42)
	s := g.set(t, 400)
	matched, total := 0, 0
	for i := range 2000 {
		c := g.container(i)
		tgt := newTarget(&c)
		var want []string
		for _, p := range s.Policies() {
			if p.sel.matchContainer(&tgt, nil) {
				want = append(want, p.ID())
			}
		}
		var got []string
		for _, p := range s.Match(&c) {
			got = append(got, p.ID())
		}
		if !slices.Equal(got, want) {
			t.Fatalf("container %+v:\nMatch     %v\nfull scan %v", c, got, want)
		}
		matched += len(got)
		total += s.Len()
		if i%10 != 0 {
			continue // Explain formats every reason: check a sample, to keep the test fast
		}
		if e := s.Explain(&c).Applying(); !slices.Equal(e, want) {
			t.Fatalf("container %+v:\nExplain   %v\nfull scan %v", c, e, want)
		}
	}
	// The generator must produce both outcomes in bulk, or the comparison proves little.
	if matched < 2000 || matched > total/2 {
		t.Fatalf("%d of %d pairs matched: the generator is off balance", matched, total)
	}
	t.Logf("%d of %d container-policy pairs matched", matched, total)
}

// BenchmarkMatch1000x1000 matches 1,000 containers against 1,000 policies; one op is the
// whole table (target: under 50 ms).
func BenchmarkMatch1000x1000(b *testing.B) {
	g := newGenerator(7)
	s := g.set(b, 1000)
	containers := make([]agentapi.Container, 1000)
	for i := range containers {
		containers[i] = g.container(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	pairs := 0
	for b.Loop() {
		pairs = 0
		for i := range containers {
			pairs += len(s.Match(&containers[i]))
		}
	}
	b.ReportMetric(float64(pairs), "matches/op")
}

// BenchmarkNewSet1000 measures building (compiling and indexing) a set of 1,000 policies,
// which karmord does on every policy change.
func BenchmarkNewSet1000(b *testing.B) {
	g := newGenerator(7)
	var docs []policy.Document
	for i := range 1000 {
		docs = append(docs, policy.ParseBytes("gen.yaml", []byte(g.policy(i)), policy.Options{})...)
	}
	b.ReportAllocs()
	for b.Loop() {
		NewSet(docs)
	}
}
