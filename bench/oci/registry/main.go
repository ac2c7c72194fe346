// Command registry serves the real distribution/v3 registry (in-memory storage) for the
// oci benchmark, counting the requests it serves. A control listener reports the counts:
//
//	GET  /counts  {"total": N, "requests": {"GET blob": n, ...}}
//	POST /reset   zero the counts
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/karmor/karmor/internal/registrytest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5000", "registry listen address (plain HTTP)")
	control := flag.String("control", "127.0.0.1:5001", "control listen address for /counts and /reset")
	flag.Parse()

	reg, err := registrytest.Start(registrytest.Options{Addr: *addr})
	if err != nil {
		slog.Error("start registry", "err", err)
		os.Exit(1)
	}
	defer reg.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /counts", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"total": reg.Total(), "requests": reg.Snapshot()})
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		reg.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	go func() {
		if err := http.ListenAndServe(*control, mux); err != nil {
			slog.Error("control listener", "err", err)
			os.Exit(1)
		}
	}()
	fmt.Printf("registry on %s, control on %s\n", reg.URL, *control)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
}
