// Command karmor-runc is invoked exactly as runc: it adds karmor's hooks to the bundle on create
// and run, then execs the real runc. See internal/runcwrap.
package main

import (
	"os"
	"syscall"

	"github.com/karmor/karmor/internal/runcwrap"
)

func main() {
	os.Exit(runcwrap.Main(runcwrap.Env{
		Args:    os.Args,
		Getenv:  os.Getenv,
		Getwd:   os.Getwd,
		Stderr:  os.Stderr,
		Self:    "/proc/self/exe",
		Exec:    syscall.Exec,
		Environ: os.Environ(),
	}))
}
