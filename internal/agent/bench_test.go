package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

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
