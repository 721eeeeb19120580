// SPDX-License-Identifier: MIT

package routing

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestChangeString(t *testing.T) {
	tests := []struct {
		c    Change
		want string
	}{
		{Change{Kind: LinkUp, Index: 3, Link: "wlan0"}, "link-up dev wlan0 (index 3)"},
		{Change{Kind: AddrAdded, Index: 3, Link: "wlan0", Prefix: netip.MustParsePrefix("198.18.0.2/24")}, "addr-added 198.18.0.2/24 dev wlan0 (index 3)"},
		{Change{Kind: DefaultRouteRemoved, Index: 4, Prefix: netip.MustParsePrefix("::/0"), Gateway: netip.MustParseAddr("fe80::1")}, "default-route-removed ::/0 via fe80::1 dev  (index 4)"},
		{Change{Kind: ChangeKind(99)}, "ChangeKind(99) dev  (index 0)"},
		{Change{Kind: DefaultRouteAdded, Index: 3, Link: "wlan0", Prefix: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("198.18.0.1"), Metric: 100}, "default-route-added 0.0.0.0/0 via 198.18.0.1 metric 100 dev wlan0 (index 3)"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("Change%+v.String() = %q, want %q", tt.c, got, tt.want)
		}
	}
}

// TestKernelSubscribe changes an uplink (a veth pair) in a fresh namespace
// and waits for each change to be reported.
func TestKernelSubscribe(t *testing.T) {
	h := enterNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ch, err := Subscribe(ctx, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	// The current state comes first: lo exists (down in a new namespace).
	expect(t, ch, Change{Kind: LinkDown, Index: 1, Link: "lo"})

	up0, up1 := addVeth(t, h, "up0", "up1")
	idx := up0.Attrs().Index
	expect(t, ch, Change{Kind: LinkDown, Index: idx, Link: "up0"})
	for _, l := range []netlink.Link{up0, up1} {
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, ch, Change{Kind: LinkUp, Index: idx, Link: "up0"})

	addr := netip.MustParsePrefix("198.18.0.2/24")
	if err := h.AddrAdd(up0, nlAddrOfPrefix(addr)); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, Change{Kind: AddrAdded, Index: idx, Link: "up0", Prefix: addr})
	gw := netip.MustParseAddr("198.18.0.1")
	def := &netlink.Route{LinkIndex: idx, Dst: nlIPNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: net.IP(gw.AsSlice()), Priority: 100}
	if err := h.RouteAdd(def); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, Change{Kind: DefaultRouteAdded, Index: idx, Link: "up0", Prefix: netip.MustParsePrefix("0.0.0.0/0"), Gateway: gw, Metric: 100})
	if err := h.RouteDel(def); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, Change{Kind: DefaultRouteRemoved, Index: idx, Link: "up0", Prefix: netip.MustParsePrefix("0.0.0.0/0"), Gateway: gw, Metric: 100})
	if err := h.AddrDel(up0, nlAddrOfPrefix(addr)); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, Change{Kind: AddrRemoved, Index: idx, Link: "up0", Prefix: addr})
	if err := h.LinkDel(up0); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, Change{Kind: LinkDown, Index: idx, Link: "up0"})

	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed 10 s after the context was canceled")
		}
	}
}

// expect reads ch until want arrives, skipping other changes, and fails
// after a generous deadline.
func expect(t *testing.T, ch <-chan Change, want Change) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed while waiting for %v", want)
			}
			if c == want {
				return
			}
			t.Logf("skipped %v", c)
		case <-deadline:
			t.Fatalf("no %v within 10 s", want)
		}
	}
}
