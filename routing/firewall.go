// SPDX-License-Identifier: MIT

package routing

import (
	"fmt"
	"net/netip"
	"strings"
)

// Firewall: one nftables table per Godwit interface, "inet godwit_IFACE",
// installed and replaced atomically by [SetFirewall] and removed by
// [RemoveFirewall]. It holds:
//
//   - Always: in a raw prerouting chain, packets for the TUN's addresses,
//     or from the TUN's subnets, that arrive on another interface are
//     dropped (unless they come from this host), as wg-quick and Mullvad
//     do against CVE-2019-14899: without it a neighbour on the physical
//     network can find the tunnel address (it answers with RSTs) and
//     inject packets that look as if they came through the tunnel.
//   - With KillSwitch: output and forward chains that drop every packet
//     that would leave in clear: only the TUN, loopback, Godwit's own
//     marked QUIC sockets, link-local IPv6 (neighbour discovery) and DHCP
//     pass. The table outlives the daemon (kill -9, a restart, a start
//     that fails), so nothing leaks while it is down; a clean stop
//     removes it.
//
// The table is named after the interface, so instances with other
// interfaces never touch each other's.

// FirewallConfig is the wanted table of one interface.
type FirewallConfig struct {
	Interface string
	// Addrs are the TUN's addresses, with their prefix length.
	Addrs []netip.Prefix
	// KillSwitch blocks traffic outside the tunnel; FwMark is the mark of
	// Godwit's own sockets, which pass (0 means DefaultFwMark).
	KillSwitch bool
	FwMark     uint32
}

// firewallTable is the name of iface's table.
func firewallTable(iface string) string { return "godwit_" + iface }

// checkFirewall validates cfg.
func checkFirewall(cfg *FirewallConfig) error {
	if cfg.Interface == "" || len(cfg.Interface) > 15 || strings.ContainsAny(cfg.Interface, "/ \t\n") {
		return fmt.Errorf("routing: firewall: bad interface name %q", cfg.Interface)
	}
	for _, a := range cfg.Addrs {
		if err := checkPrefix(a); err != nil {
			return fmt.Errorf("routing: firewall: address %v: %w", a, err)
		}
	}
	return nil
}
