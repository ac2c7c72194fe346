// Command karmor is the karmor CLI: policy validation, OCI push/pull, hook installation, container views.
package main

import (
	"os"

	"github.com/karmor/karmor/internal/cli"
)

func main() { os.Exit(cli.Execute()) }
