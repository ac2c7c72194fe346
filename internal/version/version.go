// Package version holds the build's version, stamped by the linker (see Makefile).
package version

import "runtime/debug"

// Version is set with -ldflags "-X github.com/karmor/karmor/internal/version.Version=...".
var Version = ""

// String returns the stamped version, else the module version go install recorded, else "dev".
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
