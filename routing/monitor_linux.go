// SPDX-License-Identifier: MIT

package routing

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Subscribe reports changes of the host's links, addresses and main-table
// default routes in the calling thread's network namespace: the raw
// material of the uplink monitor that triggers connection migration. It
// uses only opts.Logger.
//
// The channel first carries the current state (every link's LinkUp or
// LinkDown, every address as AddrAdded, every default route as
// DefaultRouteAdded), then changes as they happen; link updates that do not
// change a link's up state are dropped. One goroutine delivers the events
// and blocks while the receiver does not read, so read promptly. The
// channel is closed when ctx is done or the netlink subscription fails; the
// caller then re-subscribes if it still wants events.
func Subscribe(ctx context.Context, opts Options) (<-chan Change, error) {
	log := logger(opts)
	done := make(chan struct{})
	lch := make(chan netlink.LinkUpdate, 64)
	ach := make(chan netlink.AddrUpdate, 64)
	rch := make(chan netlink.RouteUpdate, 64)
	cb := func(err error) {
		select {
		case <-done:
			return // the subscription is being closed; its socket errors are expected
		default:
		}
		log.Warn("netlink subscription", "err", err)
	}
	if err := netlink.LinkSubscribeWithOptions(lch, done, netlink.LinkSubscribeOptions{ErrorCallback: cb, ListExisting: true}); err != nil {
		close(done)
		return nil, fmt.Errorf("routing: subscribe to links: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(ach, done, netlink.AddrSubscribeOptions{ErrorCallback: cb, ListExisting: true}); err != nil {
		close(done)
		drain(lch, nil, nil)
		return nil, fmt.Errorf("routing: subscribe to addresses: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(rch, done, netlink.RouteSubscribeOptions{ErrorCallback: cb, ListExisting: true}); err != nil {
		close(done)
		drain(lch, ach, nil)
		return nil, fmt.Errorf("routing: subscribe to routes: %w", err)
	}
	out := make(chan Change)
	go monitor(ctx, done, lch, ach, rch, out)
	return out, nil
}

// drain reads the given channels until netlink closes them, so that its
// receive goroutines, which block on a full channel, can exit.
func drain(lch chan netlink.LinkUpdate, ach chan netlink.AddrUpdate, rch chan netlink.RouteUpdate) {
	for lch != nil || ach != nil || rch != nil {
		select {
		case _, ok := <-lch:
			if !ok {
				lch = nil
			}
		case _, ok := <-ach:
			if !ok {
				ach = nil
			}
		case _, ok := <-rch:
			if !ok {
				rch = nil
			}
		}
	}
}

// monitor turns netlink updates into Changes until ctx is done or a
// subscription ends, then stops all subscriptions and closes out.
func monitor(ctx context.Context, done chan struct{}, lch chan netlink.LinkUpdate, ach chan netlink.AddrUpdate, rch chan netlink.RouteUpdate, out chan<- Change) {
	defer close(out)
	defer func() { close(done); drain(lch, ach, rch) }()
	type linkState struct {
		name string
		up   bool
	}
	links := make(map[int]linkState)
	name := func(index int) string { return links[index].name }
	send := func(c Change) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		var c Change
		select {
		case <-ctx.Done():
			return
		case u, ok := <-lch:
			if !ok {
				lch = nil
				return
			}
			a := u.Link.Attrs()
			// Carrier (IFF_LOWER_UP), not IFF_RUNNING: the kernel sets
			// RUNNING from its linkwatch work, up to a second after the
			// carrier comes up, and that second would be an outage.
			up := u.Header.Type != unix.RTM_DELLINK && a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_LOWER_UP != 0
			old, seen := links[a.Index]
			if u.Header.Type == unix.RTM_DELLINK {
				delete(links, a.Index)
			} else {
				links[a.Index] = linkState{name: a.Name, up: up}
			}
			if seen && old.up == up && old.name == a.Name {
				continue
			}
			c = Change{Kind: LinkDown, Index: a.Index, Link: a.Name}
			if up {
				c.Kind = LinkUp
			}
		case u, ok := <-ach:
			if !ok {
				ach = nil
				return
			}
			a, ok := netip.AddrFromSlice(u.LinkAddress.IP)
			if !ok {
				continue
			}
			bits, _ := u.LinkAddress.Mask.Size()
			c = Change{Kind: AddrRemoved, Index: u.LinkIndex, Link: name(u.LinkIndex), Prefix: netip.PrefixFrom(a.Unmap(), bits)}
			if u.NewAddr {
				c.Kind = AddrAdded
			}
		case u, ok := <-rch:
			if !ok {
				rch = nil
				return
			}
			if u.Table != mainTable || u.Dst != nil && !isDefault(u.Dst) {
				continue
			}
			dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if u.Family == netlink.FAMILY_V6 {
				dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
			c = Change{Kind: DefaultRouteRemoved, Index: u.LinkIndex, Link: name(u.LinkIndex), Prefix: dst, Metric: u.Priority}
			if gw, ok := netip.AddrFromSlice(u.Gw); ok {
				c.Gateway = gw.Unmap()
			}
			if u.Type == unix.RTM_NEWROUTE {
				c.Kind = DefaultRouteAdded
			}
		}
		if !send(c) {
			return
		}
	}
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}
