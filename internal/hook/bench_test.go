package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/hook/hooktest"
)

// BenchmarkRun measures the hook's own work for one start (read the state, config.json and
// /proc, report or spool), without the process start-up that bench/hook/run.sh includes.
func BenchmarkRun(b *testing.B) {
	for _, tc := range []struct {
		name string
		up   bool
	}{{"agent-up", true}, {"agent-down", false}} {
		b.Run(tc.name, func(b *testing.B) {
			s := newScene(b, crioAnnotations("c1", map[string]string{"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop"}), nil)
			socket := filepath.Join(b.TempDir(), "none.sock")
			if tc.up {
				agent := hooktest.Start(b)
				socket = agent.Socket
				done := make(chan struct{})
				b.Cleanup(func() { close(done) })
				go func() { // the test agent hands every event over; drop them
					for {
						select {
						case <-agent.Events:
						case <-done:
							return
						}
					}
				}()
			}
			state, err := json.Marshal(&s.state)
			if err != nil {
				b.Fatal(err)
			}
			opts := s.opts(socket, b.TempDir(), "createRuntime")
			logger := newLogger(io.Discard, false)
			b.ReportAllocs()
			for b.Loop() {
				out := Run(context.Background(), opts, bytes.NewReader(state), logger, time.Now())
				if out.Delivered != tc.up {
					b.Fatalf("delivered=%v: %v", out.Delivered, out.Err)
				}
			}
		})
	}
}
