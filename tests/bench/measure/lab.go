// SPDX-License-Identifier: MIT

package measure

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
)

// tailLines is how many lines of each log ProcLogs shows.
const tailLines = 15

// ProcLogs returns the last 15 lines of each process's log, each block
// headed by "--- <name> (<log path>):" on a line of its own and preceded
// by a newline, for appending to error messages.
func ProcLogs(procs ...*netlab.Proc) string {
	var b strings.Builder
	for _, p := range procs {
		lines := strings.Split(strings.TrimRight(p.Output(), "\n"), "\n")
		if len(lines) > tailLines {
			lines = lines[len(lines)-tailLines:]
		}
		fmt.Fprintf(&b, "\n--- %s (%s):\n%s", p.Name, p.Log, strings.Join(lines, "\n"))
	}
	return b.String()
}

// VethPair makes the namespaces aName and bName in lab, joins them with a
// veth whose ends are both called veth0, adds aAddrs to a's end and bAddrs
// to b's, and waits up to 5 s until a answers b's ping to the first of
// aAddrs. The lab owns and removes all of it.
func VethPair(lab *netlab.Lab, aName string, aAddrs []netip.Prefix, bName string, bAddrs []netip.Prefix) (a, b *netlab.NS, err error) {
	if len(aAddrs) == 0 {
		return nil, nil, errors.New("measure: veth pair: no address for " + aName)
	}
	if a, err = lab.NS(aName); err != nil {
		return nil, nil, err
	}
	if b, err = lab.NS(bName); err != nil {
		return nil, nil, err
	}
	if err := lab.Link(a, "veth0", b, "veth0"); err != nil {
		return nil, nil, err
	}
	for _, x := range []struct {
		ns    *netlab.NS
		addrs []netip.Prefix
	}{{a, aAddrs}, {b, bAddrs}} {
		for _, p := range x.addrs {
			if err := x.ns.Addr("veth0", p.String()); err != nil {
				return nil, nil, err
			}
		}
	}
	return a, b, b.WaitPing(aAddrs[0].Addr(), 5*time.Second)
}
