// SPDX-License-Identifier: MIT

package measure

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
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

func TestVethPair(t *testing.T) {
	lab := labtest.NewLab(t, "gwm")
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
