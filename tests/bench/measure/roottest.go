// SPDX-License-Identifier: MIT

package measure

import (
	"os"
	"os/exec"
)

// TB is the part of testing.TB that [RequireRoot] and [NetnsList] use, so
// that this package, which the programs import, does not import testing.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
}

// RequireRoot skips t when not root, unless the environment variable
// GODWIT_E2E=1 demands the test: then it fails t. what names the thing
// that needs network namespaces in the failure message ("the benchmark").
func RequireRoot(t TB, what string) {
	t.Helper()
	requireRoot(t, what, os.Geteuid(), os.Getenv("GODWIT_E2E"))
}

func requireRoot(t TB, what string, euid int, e2e string) {
	t.Helper()
	if euid == 0 {
		return
	}
	if e2e == "1" {
		t.Fatal("GODWIT_E2E=1 but not root: " + what + " needs network namespaces")
		return
	}
	t.Skip("needs root for network namespaces (set GODWIT_E2E=1 to make this a failure)")
}

// NetnsList returns the output of `ip netns list`, failing t if the
// command fails.
func NetnsList(t TB) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}
