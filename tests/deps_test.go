// SPDX-License-Identifier: MIT

package tests

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the map of the module honest: the daemon links no
// test package (the demo builds its labs with routing/netlab), and the
// engine's tests do not link quic-go (package tunnel sees connections
// through its own interfaces, faked by quicconn/quictest).
func TestDependencies(t *testing.T) {
	deps := func(args ...string) []string {
		t.Helper()
		out, err := exec.Command("go", append([]string{"list", "-deps"}, args...)...).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", strings.Join(args, " "), err)
		}
		return strings.Fields(string(out))
	}
	const mod = "github.com/godwit-vpn/godwit/"
	for _, p := range deps("../cmd/godwit") {
		if strings.HasPrefix(p, mod+"tests/") || strings.HasSuffix(p, "test") && strings.HasPrefix(p, mod) {
			t.Errorf("cmd/godwit links the test package %s", p)
		}
	}
	for _, p := range deps("-test", "../tunnel") {
		if strings.HasPrefix(p, "github.com/quic-go/") {
			t.Errorf("package tunnel's tests link %s", p)
		}
	}
}
