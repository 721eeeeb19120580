// SPDX-License-Identifier: MIT

package labtest

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB that records what was called instead of
// stopping the test; only the methods the gate calls are implemented.
type recorder struct {
	testing.TB
	fatal, skip []string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = append(r.fatal, fmt.Sprintf(format, args...))
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skip = append(r.skip, fmt.Sprintf(format, args...))
}

func TestRequireRoot(t *testing.T) {
	const need = "needs root (network namespaces, TUN devices, netlink)"
	tests := []struct {
		name      string
		euid      int
		e2e       bool
		wantFatal string
		wantSkip  string
	}{
		{"root", 0, false, "", ""},
		{"root with e2e", 0, true, "", ""},
		{"user", 1000, false, "", need + " (set GODWIT_E2E=1 to make this a failure)"},
		{"user with e2e", 1000, true, "GODWIT_E2E=1: " + need, ""},
	}
	for _, tt := range tests {
		var r recorder
		requireRoot(&r, tt.euid, tt.e2e)
		if got := strings.Join(r.fatal, "|"); got != tt.wantFatal {
			t.Errorf("%s: Fatalf(%q), want Fatalf(%q)", tt.name, got, tt.wantFatal)
		}
		if got := strings.Join(r.skip, "|"); got != tt.wantSkip {
			t.Errorf("%s: Skipf(%q), want Skipf(%q)", tt.name, got, tt.wantSkip)
		}
	}
}

func TestNetnsList(t *testing.T) {
	RequireRoot(t)
	var r recorder
	_ = netnsList(&r)
	if len(r.fatal) != 0 {
		t.Errorf("netnsList failed: %q", r.fatal)
	}
}
