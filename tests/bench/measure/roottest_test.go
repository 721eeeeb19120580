// SPDX-License-Identifier: MIT

package measure

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a TB that records what was called.
type recorder struct {
	fatal, skip []string
}

func (r *recorder) Helper()           {}
func (r *recorder) Fatal(args ...any) { r.fatal = append(r.fatal, fmt.Sprint(args...)) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = append(r.fatal, fmt.Sprintf(format, args...))
}
func (r *recorder) Skip(args ...any) { r.skip = append(r.skip, fmt.Sprint(args...)) }

func TestRequireRoot(t *testing.T) {
	tests := []struct {
		name      string
		euid      int
		e2e       string
		wantFatal string
		wantSkip  string
	}{
		{"root", 0, "", "", ""},
		{"root with e2e", 0, "1", "", ""},
		{"user", 1000, "", "", "needs root for network namespaces (set GODWIT_E2E=1 to make this a failure)"},
		{"user with e2e=0", 1000, "0", "", "needs root for network namespaces (set GODWIT_E2E=1 to make this a failure)"},
		{"user with e2e", 1000, "1", "GODWIT_E2E=1 but not root: the benchmark needs network namespaces", ""},
	}
	for _, tt := range tests {
		var r recorder
		requireRoot(&r, "the benchmark", tt.euid, tt.e2e)
		if got := strings.Join(r.fatal, "|"); got != tt.wantFatal {
			t.Errorf("%s: Fatal(%q), want Fatal(%q)", tt.name, got, tt.wantFatal)
		}
		if got := strings.Join(r.skip, "|"); got != tt.wantSkip {
			t.Errorf("%s: Skip(%q), want Skip(%q)", tt.name, got, tt.wantSkip)
		}
	}
}

func TestNetnsList(t *testing.T) {
	RequireRoot(t, "TestNetnsList")
	var r recorder
	_ = NetnsList(&r)
	if len(r.fatal) != 0 {
		t.Errorf("NetnsList failed: %q", r.fatal)
	}
}
