// SPDX-License-Identifier: MIT

package routing

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestUplinkViewUsable feeds monitor changes to the view and checks which
// uplinks it considers usable, best first.
func TestUplinkViewUsable(t *testing.T) {
	v4, v6 := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")
	gw := netip.MustParseAddr("198.51.100.1")
	up := func(i int, name string) Change {
		return Change{Kind: LinkUp, Index: i, Link: name}
	}
	down := func(i int, name string) Change {
		return Change{Kind: LinkDown, Index: i, Link: name}
	}
	addr := func(i int, name, p string) Change {
		return Change{Kind: AddrAdded, Index: i, Link: name, Prefix: netip.MustParsePrefix(p)}
	}
	delAddr := func(i int, name, p string) Change {
		return Change{Kind: AddrRemoved, Index: i, Link: name, Prefix: netip.MustParsePrefix(p)}
	}
	route := func(i int, name string, metric int) Change {
		return Change{Kind: DefaultRouteAdded, Index: i, Link: name, Prefix: v4, Gateway: gw, Metric: metric}
	}
	delRoute := func(i int, name string, metric int) Change {
		return Change{Kind: DefaultRouteRemoved, Index: i, Link: name, Prefix: v4, Gateway: gw, Metric: metric}
	}
	full := func(i int, name string, metric int) []Change {
		return []Change{up(i, name), addr(i, name, "198.51.100.2/24"), route(i, name, metric)}
	}
	cat := func(parts ...[]Change) []Change { return slices.Concat(parts...) }
	tests := []struct {
		name    string
		uplinks []string // nil: "any"
		changes []Change
		want    []string
	}{
		{"listed order wins over metric", []string{"wifi0", "cell0"}, cat(full(3, "cell0", 100), full(2, "wifi0", 200)), []string{"wifi0", "cell0"}},
		{"unlisted link ignored", []string{"wifi0"}, cat(full(2, "wifi0", 100), full(4, "eth9", 50)), []string{"wifi0"}},
		{"no address", []string{"wifi0"}, []Change{up(2, "wifi0"), route(2, "wifi0", 1)}, []string{}},
		{"link-local only", []string{"wifi0"}, []Change{up(2, "wifi0"), addr(2, "wifi0", "fe80::1/64"), route(2, "wifi0", 1)}, []string{}},
		{"IPv6 only", []string{"wifi0"}, []Change{up(2, "wifi0"), addr(2, "wifi0", "2001:db8::2/64"),
			{Kind: DefaultRouteAdded, Index: 2, Link: "wifi0", Prefix: v6}}, []string{"wifi0"}},
		{"no default route", []string{"wifi0"}, []Change{up(2, "wifi0"), addr(2, "wifi0", "198.51.100.2/24")}, []string{}},
		{"route removed", []string{"wifi0"}, cat(full(2, "wifi0", 100), []Change{delRoute(2, "wifi0", 100)}), []string{}},
		{"address removed", []string{"wifi0"}, cat(full(2, "wifi0", 100), []Change{delAddr(2, "wifi0", "198.51.100.2/24")}), []string{}},
		{"carrier lost", []string{"wifi0", "cell0"}, cat(full(2, "wifi0", 100), full(3, "cell0", 200), []Change{down(2, "wifi0")}), []string{"cell0"}},
		{"up without its route", []string{"wifi0", "cell0"}, cat(full(2, "wifi0", 100), full(3, "cell0", 200), []Change{down(2, "wifi0"), up(2, "wifi0")}), []string{"cell0"}},
		{"back up", []string{"wifi0", "cell0"}, cat(full(2, "wifi0", 100), full(3, "cell0", 200), []Change{down(2, "wifi0"), up(2, "wifi0"), route(2, "wifi0", 100)}), []string{"wifi0", "cell0"}},
		{"address removed takes its gateway's routes", []string{"wifi0"}, cat(full(2, "wifi0", 100), []Change{delAddr(2, "wifi0", "198.51.100.2/24"), addr(2, "wifi0", "198.51.100.2/24")}), []string{}},
		{"any by metric", nil, cat(full(2, "wifi0", 600), full(3, "cell0", 200), full(4, "eth0", 100)), []string{"eth0", "cell0", "wifi0"}},
		{"any skips lo and the TUN", nil, cat(full(1, "lo", 1), full(5, "gw0", 1), full(2, "wifi0", 600)), []string{"wifi0"}},
		{"any ties by name", nil, cat(full(3, "b0", 100), full(2, "a0", 100)), []string{"a0", "b0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewUplinkView(UplinkSelection{Names: tt.uplinks, Any: tt.uplinks == nil, Exclude: []string{"gw0"}})
			for _, c := range tt.changes {
				v.Apply(c)
			}
			got := v.Usable()
			if !slices.Equal(got, tt.want) {
				t.Errorf("usable = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLostAny: only an uplink that was usable and is not now is urgent.
func TestLostAny(t *testing.T) {
	tests := []struct {
		before, now []string
		want        bool
	}{
		{nil, []string{"a"}, false},
		{[]string{"a"}, []string{"a", "b"}, false},
		{[]string{"a", "b"}, []string{"b", "a"}, false},
		{[]string{"a", "b"}, []string{"b"}, true},
		{[]string{"a"}, []string{}, true},
	}
	for _, tt := range tests {
		if got := lostAny(tt.before, tt.now); got != tt.want {
			t.Errorf("lostAny(%q, %q) = %v, want %v", tt.before, tt.now, got, tt.want)
		}
	}
}

// TestUplinkWatchUrgency: a change that makes a reported uplink unusable is
// reported before the next change is read; one that adds an uplink waits
// for the debounce.
func TestUplinkWatchUrgency(t *testing.T) {
	gw := netip.MustParseAddr("198.51.100.1")
	full := func(i int, name string) []Change {
		return []Change{
			{Kind: LinkUp, Index: i, Link: name},
			{Kind: AddrAdded, Index: i, Link: name, Prefix: netip.MustParsePrefix("198.51.100.2/24")},
			{Kind: DefaultRouteAdded, Index: i, Link: name, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Gateway: gw},
		}
	}
	updates := make(chan []string, 16)
	w := &uplinkWatch{
		log:      slog.New(slog.DiscardHandler),
		view:     NewUplinkView(UplinkSelection{Names: []string{"wifi0", "cell0", "eth0"}}),
		update:   func(u []string) { updates <- u },
		debounce: time.Hour, // never, unless urgent
	}
	for _, c := range slices.Concat(full(2, "wifi0"), full(3, "cell0")) {
		w.view.Apply(c)
	}
	w.last = w.view.Usable() // as reported before
	ch := make(chan Change)  // unbuffered: a send returns once watch took it
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.watch(ctx, ch) }()
	defer func() { cancel(); close(ch); <-done }()

	for _, c := range full(4, "eth0") {
		ch <- c
	}
	select {
	case u := <-updates:
		t.Fatalf("update(%q) for uplinks appearing, want none before the debounce", u)
	default:
	}
	ch <- Change{Kind: LinkDown, Index: 2, Link: "wifi0"}
	ch <- Change{Kind: LinkUp, Index: 9, Link: "other0"} // taken only after the loss was handled
	select {
	case u := <-updates:
		if !slices.Equal(u, []string{"cell0", "eth0"}) {
			t.Errorf("update(%q) after wifi0 went down, want [cell0 eth0]", u)
		}
	default:
		t.Fatal("no update when a reported uplink went down")
	}
}
