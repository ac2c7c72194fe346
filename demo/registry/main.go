// Command registry serves an OCI registry for `make demo`: the real distribution/v3 registry,
// in memory, plain HTTP, on a loopback address, so the demo needs nothing installed beyond Go's
// build. It runs until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/karmor/karmor/internal/registrytest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (loopback; port 0 picks a free one)")
	addrFile := flag.String("addr-file", "", "write the registry's host:port to this file once it serves (atomically)")
	flag.Parse()
	if err := run(*addr, *addrFile); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
}

func run(addr, addrFile string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: want host:port: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--addr %q: this demo registry accepts anyone's pushes, so it listens on loopback addresses only", addr)
	}
	reg, err := registrytest.Start(registrytest.Options{Addr: addr})
	if err != nil {
		return err
	}
	defer reg.Close()
	if addrFile != "" {
		if err := writeAtomically(addrFile, reg.Host+"\n"); err != nil {
			return err
		}
	}
	fmt.Printf("registry serving on %s (in memory, plain HTTP)\n", reg.Host)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	return nil
}

// writeAtomically writes content to path through a temporary file in the same directory, so a
// reader never sees half an address.
func writeAtomically(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".addr-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
