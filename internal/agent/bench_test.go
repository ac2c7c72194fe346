package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// BenchmarkReport1000Concurrent sends 1000 start events from 1000 goroutines at once (as hooks of
// 1000 containers starting together would) and checks that every one is acknowledged with its
// own sequence number and lands in the table. It reports the wall time per burst.
func BenchmarkReport1000Concurrent(b *testing.B) {
	const burst = 1000
	cfg, _ := testConfig(b)
	cfg.Logger = slog.New(slog.DiscardHandler)
	a := runAgent(b, cfg)
	cl := agentapi.NewClient(cfg.Socket)
	cl.Timeout = time.Minute
	b.ResetTimer()
	var total time.Duration
	for round := 0; round < b.N; round++ {
		seqs := make([]uint64, burst)
		errs := make([]error, burst)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range burst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ev := &agentapi.Event{Kind: agentapi.KindStart, Stage: "createRuntime", Time: time.Now(),
					Container: agentapi.Container{ID: fmt.Sprintf("r%d-c%04d", round, i), Labels: map[string]string{"app": "bench"}}}
				seqs[i], errs[i] = cl.Report(context.Background(), ev)
			}()
		}
		began := time.Now()
		close(start)
		wg.Wait()
		total += time.Since(began)

		b.StopTimer()
		for i, err := range errs {
			if err != nil {
				b.Fatalf("event %d not acknowledged: %v", i, err)
			}
		}
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		for i := 1; i < burst; i++ {
			if seqs[i] != seqs[i-1]+1 {
				b.Fatalf("acknowledgements are not %d distinct consecutive numbers: %d then %d", burst, seqs[i-1], seqs[i])
			}
		}
		if n := a.containerCount(); n != burst*(round+1) {
			b.Fatalf("table holds %d containers, want %d", n, burst*(round+1))
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/burst")
	b.ReportMetric(float64(burst*b.N)/total.Seconds(), "reports/s")
}

// BenchmarkListWithPolicies lists 1000 containers against 1000 policies: every answer matches
// each container with the set in force (outside the table's lock). It reports the time of one
// whole list request over the socket; ns/op divided by 1000 is the cost per container.
func BenchmarkListWithPolicies(b *testing.B) {
	const containers, policies = 1000, 1000
	dir := b.TempDir()
	var docs strings.Builder
	for i := range policies {
		fmt.Fprintf(&docs, "---\n%s", testutil.BlockShellPolicy(fmt.Sprintf("p%04d", i), "", fmt.Sprintf("app%d", i%100)))
	}
	replaceFile(b, filepath.Join(dir, "all.yaml"), docs.String())
	cfg, _ := testConfig(b)
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.PolicyDirs = []string{dir}
	runAgent(b, cfg)
	cl := agentapi.NewClient(cfg.Socket)
	cl.Timeout = time.Minute
	for i := range containers {
		ev := &agentapi.Event{Kind: agentapi.KindStart, Container: agentapi.Container{ID: fmt.Sprintf("c%04d", i), PID: i + 1,
			Annotations: map[string]string{"app": fmt.Sprintf("app%d", i%200)}}}
		if _, err := cl.Report(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		list, err := cl.List(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		// app0..app99 are each selected by 10 policies; app100..app199 by none.
		if len(list) != containers || len(list[0].Policies) != 10 || len(list[containers-1].Policies) != 0 {
			b.Fatalf("list of %d: first has %d policies, last %d", len(list), len(list[0].Policies), len(list[containers-1].Policies))
		}
	}
}
