// SPDX-License-Identifier: MIT

package measure

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
)

func TestProcLogs(t *testing.T) {
	dir := t.TempDir()
	var long []string
	for i := range 20 {
		long = append(long, fmt.Sprintf("line %d", i))
	}
	a := filepath.Join(dir, "a.log")
	if err := os.WriteFile(a, []byte(strings.Join(long, "\n")+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(dir, "b.log")
	if err := os.WriteFile(b, []byte("only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := ProcLogs(&netlab.Proc{Name: "hub", Log: a}, &netlab.Proc{Name: "site", Log: b})
	want := "\n--- hub (" + a + "):\n" + strings.Join(long[5:], "\n") + "\n--- site (" + b + "):\nonly"
	if got != want {
		t.Errorf("ProcLogs = %q, want %q", got, want)
	}
	if got := ProcLogs(); got != "" {
		t.Errorf("ProcLogs() = %q, want empty", got)
	}
}

// newLab returns a lab that t's cleanup closes, or skips t when not root.
func newLab(t *testing.T, what string) *netlab.Lab {
	t.Helper()
	RequireRoot(t, what)
	lab, err := netlab.New("gwm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	return lab
}

func TestExited(t *testing.T) {
	lab := newLab(t, "TestExited")
	ns, err := lab.NS("a")
	if err != nil {
		t.Fatal(err)
	}
	running, err := ns.Start("sleeper", "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	done, err := ns.Start("true", "true")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := done.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := Exited(done); !got {
		t.Errorf("Exited(true after Wait) = %v, want true", got)
	}
	if got := Exited(running); got {
		t.Errorf("Exited(sleep 60) = %v, want false", got)
	}
}

func TestVethPair(t *testing.T) {
	lab := newLab(t, "TestVethPair")
	aAddrs := []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("2001:db8::1/64")}
	bAddrs := []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24"), netip.MustParsePrefix("2001:db8::2/64")}
	a, b, err := VethPair(lab, "a", aAddrs, "b", bAddrs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ns   *netlab.NS
		want []netip.Prefix
	}{{a, aAddrs}, {b, bAddrs}} {
		out, err := tt.ns.Exec("ip", "-o", "addr", "show", "dev", "veth0")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tt.want {
			if !strings.Contains(out, " "+p.String()+" ") {
				t.Errorf("%s veth0 addresses %q, want %v among them", tt.ns.Name, out, p)
			}
		}
	}
	if _, _, err := VethPair(lab, "c", nil, "d", bAddrs); err == nil {
		t.Error("VethPair without an address for a succeeded, want error")
	}
}
