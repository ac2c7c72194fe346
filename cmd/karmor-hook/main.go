// Command karmor-hook is the OCI runtime hook that reports container starts and stops to karmord.
package main

import (
	"os"

	"github.com/karmor/karmor/internal/hook"
)

func main() { os.Exit(hook.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
