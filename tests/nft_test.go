// SPDX-License-Identifier: MIT

package tests

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/godwit-vpn/godwit/routing/netlab"
)

const nftTable = "gwtest"

// needNft fails the test unless the nft command is installed; what says
// what needs it.
func needNft(t *testing.T, what string) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("%s needs the nft command (package nftables): %v", what, err)
	}
}

// loadNft writes ruleset to file and loads it in ns with nft -f.
func loadNft(t *testing.T, ns *netlab.NS, file, ruleset string) {
	t.Helper()
	must(t, os.WriteFile(file, []byte(ruleset), 0o644))
	if _, err := ns.Exec("nft", "-f", file); err != nil {
		t.Fatalf("nft ruleset:\n%s\n%v", ruleset, err)
	}
}

// nftCounters makes table inet gwtest in ns with an output-hook chain that
// counts, in a named counter per entry, the packets matching each rule
// expression. The table goes away with the namespace.
func nftCounters(t *testing.T, l *netlab.Lab, ns *netlab.NS, rules map[string]string) {
	t.Helper()
	needNft(t, "this test")
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", nftTable)
	names := slices.Sorted(maps.Keys(rules))
	for _, name := range names {
		fmt.Fprintf(&b, "\tcounter %s {}\n", name)
	}
	b.WriteString("\tchain out {\n\t\ttype filter hook output priority 0; policy accept;\n")
	for _, name := range names {
		fmt.Fprintf(&b, "\t\t%s counter name %q\n", rules[name], name)
	}
	b.WriteString("\t}\n}\n")
	loadNft(t, ns, filepath.Join(l.Dir, ns.Name+".nft"), b.String())
}

// nftCounter reads the packet count of a counter made by nftCounters.
func nftCounter(t *testing.T, ns *netlab.NS, name string) uint64 {
	t.Helper()
	packets, _ := nftCounterIn(t, ns, nftTable, name)
	return packets
}

// nftCounterIn reads the packets and bytes of the named counter in table
// inet table of ns.
func nftCounterIn(t *testing.T, ns *netlab.NS, table, name string) (packets, bytes uint64) {
	t.Helper()
	out, err := ns.Exec("nft", "-j", "list", "counter", "inet", table, name)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
				Bytes   uint64 `json:"bytes"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("nft -j list counter inet %s %s: %v in %q", table, name, err, out)
	}
	for _, e := range v.Nftables {
		if e.Counter != nil && e.Counter.Name == name {
			return e.Counter.Packets, e.Counter.Bytes
		}
	}
	t.Fatalf("nft counter inet %s %s not found in %q", table, name, out)
	return 0, 0
}
