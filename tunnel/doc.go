// SPDX-License-Identifier: MIT

// Package tunnel is Godwit's engine: it moves IP packets between a TUN
// device and the peers' datagram connections, choosing the peer by the
// destination address (longest-prefix match over the peers' allowed-IPs)
// and checking that packets coming from a peer carry a source address
// inside that peer's allowed-IPs.
//
// Directions are named relative to the network, as in Tailscale:
//
//   - outbound: read from the TUN device and sent to a peer over its
//     [DatagramConn];
//   - inbound: received from a peer over its [DatagramConn] and written to
//     the TUN device.
//
// The words are used only with this meaning in this package. ICMP errors
// the tunnel generates itself (destination unreachable, packet too big) are
// written to the TUN like inbound packets.
//
// A [Tunnel] runs one TUN reader, one TUN writer, one sender per peer and
// one receiver per attached connection; a connection that takes a datagram
// handler does the receiver's per-packet work on its own goroutine (see
// outbound.go and inbound.go).
// Drops are counted, never logged per packet; see [Stats].
package tunnel
