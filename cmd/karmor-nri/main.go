// Command karmor-nri is karmor's NRI plugin: beside containerd or CRI-O, it adds karmor-hook and
// the pod's labels to every container. See internal/nri.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/karmor/karmor/internal/nri"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := nri.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
