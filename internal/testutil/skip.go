package testutil

import (
	"fmt"
	"os"
	"testing"
)

// EnvRequireAll names the variable .ci/run sets: with it, a missing real part fails the test
// instead of skipping it, so a skip can never hide an install step CI forgot.
const EnvRequireAll = "KARMOR_TEST_REQUIRE_ALL"

// Unavailable stops a test that cannot run here: a loud skip on a developer's machine, a failure
// under EnvRequireAll=1 (CI).
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(EnvRequireAll) == "1" {
		t.Fatalf("%s=1 requires every real part, but: %s", EnvRequireAll, msg)
	}
	t.Skip("SKIP (loud): " + msg)
}
