// SPDX-License-Identifier: MIT

package routing

import (
	"fmt"
	"net/netip"
)

// ChangeKind says what a [Change] reports.
type ChangeKind int

// The kinds of [Change].
const (
	// LinkUp: a link is administratively up and has carrier
	// (IFF_UP and carrier, IFF_LOWER_UP), newly or after being down.
	LinkUp ChangeKind = iota + 1
	// LinkDown: a link lost IFF_UP or its carrier, or was deleted.
	LinkDown
	// AddrAdded: an address was added to a link.
	AddrAdded
	// AddrRemoved: an address was removed from a link.
	AddrRemoved
	// DefaultRouteAdded: a default route appeared in the main table.
	DefaultRouteAdded
	// DefaultRouteRemoved: a default route left the main table.
	DefaultRouteRemoved
)

// String returns the kind's name, such as "link-up".
func (k ChangeKind) String() string {
	switch k {
	case LinkUp:
		return "link-up"
	case LinkDown:
		return "link-down"
	case AddrAdded:
		return "addr-added"
	case AddrRemoved:
		return "addr-removed"
	case DefaultRouteAdded:
		return "default-route-added"
	case DefaultRouteRemoved:
		return "default-route-removed"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change is one event from [Subscribe]. It is a value; the receiver owns it.
type Change struct {
	Kind ChangeKind
	// Index is the link's interface index.
	Index int
	// Link is the link's name, or "" when the link is not (or no longer)
	// known.
	Link string
	// Prefix is the address with its prefix length for AddrAdded and
	// AddrRemoved, and the route's destination (0.0.0.0/0 or ::/0) for
	// DefaultRouteAdded and DefaultRouteRemoved; zero otherwise.
	Prefix netip.Prefix
	// Gateway is a default route's next hop; zero when it has none (a
	// point-to-point link) and for other kinds.
	Gateway netip.Addr
	// Metric is a default route's metric (priority; lower is preferred),
	// and 0 for other kinds.
	Metric int
}

// String formats c for logs, such as "addr-added 198.18.0.2/24 dev wlan0 (index 3)"
// or "default-route-added 0.0.0.0/0 via 198.18.0.1 metric 100 dev wlan0 (index 3)".
func (c Change) String() string {
	s := c.Kind.String()
	if c.Prefix.IsValid() {
		s += " " + c.Prefix.String()
	}
	if c.Gateway.IsValid() {
		s += " via " + c.Gateway.String()
	}
	if c.Metric != 0 {
		s += fmt.Sprintf(" metric %d", c.Metric)
	}
	return fmt.Sprintf("%s dev %s (index %d)", s, c.Link, c.Index)
}
