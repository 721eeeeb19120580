// SPDX-License-Identifier: MIT

package main

import (
	"log/slog"
	"net/netip"
	"slices"
	"testing"

	"github.com/godwit-vpn/godwit/config"
	"github.com/godwit-vpn/godwit/quicconn/quictest"
	"github.com/godwit-vpn/godwit/routing"
)

// TestMobilityUsable feeds monitor changes to the policy and checks which
// uplinks it considers usable, best first.
func TestMobilityUsable(t *testing.T) {
	v4, v6 := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")
	gw := netip.MustParseAddr("198.51.100.1")
	up := func(i int, name string) routing.Change {
		return routing.Change{Kind: routing.LinkUp, Index: i, Link: name}
	}
	down := func(i int, name string) routing.Change {
		return routing.Change{Kind: routing.LinkDown, Index: i, Link: name}
	}
	addr := func(i int, name, p string) routing.Change {
		return routing.Change{Kind: routing.AddrAdded, Index: i, Link: name, Prefix: netip.MustParsePrefix(p)}
	}
	delAddr := func(i int, name, p string) routing.Change {
		return routing.Change{Kind: routing.AddrRemoved, Index: i, Link: name, Prefix: netip.MustParsePrefix(p)}
	}
	route := func(i int, name string, metric int) routing.Change {
		return routing.Change{Kind: routing.DefaultRouteAdded, Index: i, Link: name, Prefix: v4, Gateway: gw, Metric: metric}
	}
	delRoute := func(i int, name string, metric int) routing.Change {
		return routing.Change{Kind: routing.DefaultRouteRemoved, Index: i, Link: name, Prefix: v4, Gateway: gw, Metric: metric}
	}
	full := func(i int, name string, metric int) []routing.Change {
		return []routing.Change{up(i, name), addr(i, name, "198.51.100.2/24"), route(i, name, metric)}
	}
	cat := func(parts ...[]routing.Change) []routing.Change { return slices.Concat(parts...) }
	tests := []struct {
		name    string
		uplinks []string // nil: "any"
		changes []routing.Change
		want    []string
	}{
		{"listed order wins over metric", []string{"wifi0", "cell0"}, cat(full(3, "cell0", 100), full(2, "wifi0", 200)), []string{"wifi0", "cell0"}},
		{"unlisted link ignored", []string{"wifi0"}, cat(full(2, "wifi0", 100), full(4, "eth9", 50)), []string{"wifi0"}},
		{"no address", []string{"wifi0"}, []routing.Change{up(2, "wifi0"), route(2, "wifi0", 1)}, []string{}},
		{"link-local only", []string{"wifi0"}, []routing.Change{up(2, "wifi0"), addr(2, "wifi0", "fe80::1/64"), route(2, "wifi0", 1)}, []string{}},
		{"IPv6 only", []string{"wifi0"}, []routing.Change{up(2, "wifi0"), addr(2, "wifi0", "2001:db8::2/64"),
			{Kind: routing.DefaultRouteAdded, Index: 2, Link: "wifi0", Prefix: v6}}, []string{"wifi0"}},
		{"no default route", []string{"wifi0"}, []routing.Change{up(2, "wifi0"), addr(2, "wifi0", "198.51.100.2/24")}, []string{}},
		{"route removed", []string{"wifi0"}, cat(full(2, "wifi0", 100), []routing.Change{delRoute(2, "wifi0", 100)}), []string{}},
		{"address removed", []string{"wifi0"}, cat(full(2, "wifi0", 100), []routing.Change{delAddr(2, "wifi0", "198.51.100.2/24")}), []string{}},
		{"carrier lost", []string{"wifi0", "cell0"}, cat(full(2, "wifi0", 100), full(3, "cell0", 200), []routing.Change{down(2, "wifi0")}), []string{"cell0"}},
		{"up without its route", []string{"wifi0", "cell0"}, cat(full(2, "wifi0", 100), full(3, "cell0", 200), []routing.Change{down(2, "wifi0"), up(2, "wifi0")}), []string{"cell0"}},
		{"back up", []string{"wifi0", "cell0"}, cat(full(2, "wifi0", 100), full(3, "cell0", 200), []routing.Change{down(2, "wifi0"), up(2, "wifi0"), route(2, "wifi0", 100)}), []string{"wifi0", "cell0"}},
		{"address removed takes its gateway's routes", []string{"wifi0"}, cat(full(2, "wifi0", 100), []routing.Change{delAddr(2, "wifi0", "198.51.100.2/24"), addr(2, "wifi0", "198.51.100.2/24")}), []string{}},
		{"any by metric", nil, cat(full(2, "wifi0", 600), full(3, "cell0", 200), full(4, "eth0", 100)), []string{"eth0", "cell0", "wifi0"}},
		{"any skips lo and the TUN", nil, cat(full(1, "lo", 1), full(5, "gw0", 1), full(2, "wifi0", 600)), []string{"wifi0"}},
		{"any ties by name", nil, cat(full(3, "b0", 100), full(2, "a0", 100)), []string{"a0", "b0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{Interface: config.Interface{Name: "gw0", Uplinks: tt.uplinks, UplinksAny: tt.uplinks == nil}}
			m := newMobility(cfg, slog.New(slog.DiscardHandler))
			for _, c := range tt.changes {
				m.apply(c)
			}
			m.mu.Lock()
			got := m.usableLocked()
			m.mu.Unlock()
			if !slices.Equal(got, tt.want) {
				t.Errorf("usable = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMobilityRank(t *testing.T) {
	usable := []string{"wifi0", "cell0"}
	tests := []struct {
		name string
		want int
	}{{"wifi0", 0}, {"cell0", 1}, {"eth9", 2}, {"", 2}}
	for _, tt := range tests {
		if got := rank(usable, tt.name); got != tt.want {
			t.Errorf("rank(%q, %q) = %d, want %d", usable, tt.name, got, tt.want)
		}
	}
}

func TestNewMobilityOff(t *testing.T) {
	if m := newMobility(&config.Config{}, slog.New(slog.DiscardHandler)); m != nil {
		t.Errorf("newMobility without uplinks = %v, want nil", m)
	}
}

// TestSwitchToDeadConnForgets switches a connection that has died and been
// forgotten already: the policy must not keep the reason, and with it the
// connection, for good.
func TestSwitchToDeadConnForgets(t *testing.T) {
	cli, srv := quictest.LoopbackPair(t)
	_ = srv.Close("test: gone")
	<-cli.Done()
	d := &daemon{}
	d.setAuthorized(&config.Config{})
	m := newMobility(&config.Config{Interface: config.Interface{Name: "gw0", Uplinks: []string{"wifi0", "cell0"}}},
		slog.New(slog.DiscardHandler))
	m.d = d
	m.forget(cli) // what the daemon does once cli is done

	if m.switchTo(cli, "cell0", "test") {
		t.Fatal("switchTo a dead conn = true, want false")
	}
	m.mu.Lock()
	n := len(m.reasons)
	m.mu.Unlock()
	if n != 0 {
		t.Errorf("reasons kept after switching a dead conn: %d, want 0", n)
	}
}
