// SPDX-License-Identifier: MIT

package routing

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
)

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

var gw0 = linkInfo{name: "gw0", index: 7, mtu: 1500, tun: true}

func diffOps(t *testing.T, step string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: ops:\n got: %s\nwant: %s", step, fmtOps(got), fmtOps(want))
	}
}

// stepOps fails the test unless err, the outcome of a step's Set or Close,
// is nil, and compares the operations of the step with want.
func stepOps(t *testing.T, step string, err error, f *fakeNL, want []string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: err = %v, want nil", step, err)
	}
	diffOps(t, step, f.takeOps(), want)
}

func fmtOps(ops []string) string {
	if len(ops) == 0 {
		return "(none)"
	}
	return "\n\t" + strings.Join(ops, "\n\t")
}

// TestManagerStates runs one Manager through a sequence of configurations
// and compares the exact operations each step performs.
func TestManagerStates(t *testing.T) {
	base := func(routes ...string) *Config {
		return &Config{Interface: "gw0", MTU: 1280, Addrs: pfx("10.77.0.1/24"), Routes: pfx(routes...)}
	}
	dual := func(routes ...string) *Config {
		return &Config{Interface: "gw0", MTU: 1280, Addrs: pfx("10.77.0.1/24", "fd77::1/64"), Routes: pfx(routes...)}
	}
	// moved is dual with both default routes in table 100 behind mark 0x1.
	moved := func(mtu int, addr4 string) *Config {
		return &Config{Interface: "gw0", MTU: mtu, Addrs: pfx(addr4, "fd77::1/64"),
			Routes: pfx("0.0.0.0/0", "::/0", "192.168.30.0/24"), Table: 100, FwMark: 0x1}
	}
	steps := []struct {
		name  string
		cfg   *Config
		close bool
		want  []string
	}{
		{
			name: "first set",
			cfg:  base("10.77.0.2/32", "192.168.20.0/24"),
			want: []string{
				"link set gw0 mtu 1280",
				"link set gw0 up",
				"sysctl net.ipv4.conf.gw0.send_redirects=0",
				"addr add 10.77.0.1/24 dev gw0",
				"route add 192.168.20.0/24 dev gw0 table main",
			},
		},
		{
			name: "identical set is a no-op",
			cfg:  base("10.77.0.2/32", "192.168.20.0/24"),
		},
		{
			name: "add a route",
			cfg:  base("10.77.0.2/32", "192.168.20.0/24", "10.77.0.3/32", "192.168.30.0/24"),
			want: []string{"route add 192.168.30.0/24 dev gw0 table main"},
		},
		{
			name: "remove a peer's routes",
			cfg:  base("10.77.0.3/32", "192.168.30.0/24"),
			want: []string{"route del 192.168.20.0/24 dev gw0 table main"},
		},
		{
			name: "host bits and duplicates are ignored",
			cfg:  base("10.77.0.3/32", "192.168.30.7/24", "192.168.30.0/24"),
		},
		{
			name: "add a default route",
			cfg:  base("10.77.0.3/32", "192.168.30.0/24", "0.0.0.0/0"),
			want: []string{
				"route add 0.0.0.0/0 dev gw0 table 18263",
				"rule add -4 pref 5300 lookup main suppress_prefixlength 0",
				"rule add -4 pref 5301 not fwmark 0x4757 lookup 18263",
			},
		},
		{
			name: "default route again is a no-op",
			cfg:  base("0.0.0.0/0", "10.77.0.3/32", "192.168.30.0/24"),
		},
		{
			name: "remove the default route",
			cfg:  base("10.77.0.3/32", "192.168.30.0/24"),
			want: []string{
				"rule del -4 pref 5300 lookup main suppress_prefixlength 0",
				"rule del -4 pref 5301 not fwmark 0x4757 lookup 18263",
				"route del 0.0.0.0/0 dev gw0 table 18263",
			},
		},
		{
			name: "v4 and v6",
			cfg:  dual("10.77.0.3/32", "192.168.30.0/24", "fd77::3/128", "2001:db8:1::/48", "::/0"),
			want: []string{
				"addr add fd77::1/64 dev gw0 nodad",
				"route add ::/0 dev gw0 table 18263",
				"route add 2001:db8:1::/48 dev gw0 table main",
				"rule add -6 pref 5300 lookup main suppress_prefixlength 0",
				"rule add -6 pref 5301 not fwmark 0x4757 lookup 18263",
			},
		},
		{
			name: "both default routes",
			cfg:  dual("0.0.0.0/0", "::/0", "192.168.30.0/24"),
			want: []string{
				"route del 2001:db8:1::/48 dev gw0 table main",
				"route add 0.0.0.0/0 dev gw0 table 18263",
				"rule add -4 pref 5300 lookup main suppress_prefixlength 0",
				"rule add -4 pref 5301 not fwmark 0x4757 lookup 18263",
			},
		},
		{
			name: "custom table and mark move only what depends on them",
			cfg:  moved(1280, "10.77.0.1/24"),
			want: []string{
				"rule del -4 pref 5301 not fwmark 0x4757 lookup 18263",
				"rule del -6 pref 5301 not fwmark 0x4757 lookup 18263",
				"route del 0.0.0.0/0 dev gw0 table 18263",
				"route del ::/0 dev gw0 table 18263",
				"route add 0.0.0.0/0 dev gw0 table 100",
				"route add ::/0 dev gw0 table 100",
				"rule add -4 pref 5301 not fwmark 0x1 lookup 100",
				"rule add -6 pref 5301 not fwmark 0x1 lookup 100",
			},
		},
		{
			name: "change mtu and an address",
			cfg:  moved(1400, "10.77.0.1/16"),
			want: []string{
				"link set gw0 mtu 1400",
				"addr del 10.77.0.1/24 dev gw0",
				"addr add 10.77.0.1/16 dev gw0",
			},
		},
		{
			name: "nil removes everything",
			cfg:  nil,
			want: []string{
				"rule del -4 pref 5300 lookup main suppress_prefixlength 0",
				"rule del -4 pref 5301 not fwmark 0x1 lookup 100",
				"rule del -6 pref 5300 lookup main suppress_prefixlength 0",
				"rule del -6 pref 5301 not fwmark 0x1 lookup 100",
				"route del 0.0.0.0/0 dev gw0 table 100",
				"route del 192.168.30.0/24 dev gw0 table main",
				"route del ::/0 dev gw0 table 100",
				"addr del 10.77.0.1/16 dev gw0",
				"addr del fd77::1/64 dev gw0 nodad",
			},
		},
		{
			name: "nil again is a no-op",
			cfg:  nil,
		},
		{
			name: "set after nil adds again",
			cfg:  base("192.168.20.0/24", "0.0.0.0/0"),
			want: []string{
				"link set gw0 mtu 1280",
				"addr add 10.77.0.1/24 dev gw0",
				"route add 0.0.0.0/0 dev gw0 table 18263",
				"route add 192.168.20.0/24 dev gw0 table main",
				"rule add -4 pref 5300 lookup main suppress_prefixlength 0",
				"rule add -4 pref 5301 not fwmark 0x4757 lookup 18263",
			},
		},
		{
			name:  "close removes everything",
			close: true,
			want: []string{
				"rule del -4 pref 5300 lookup main suppress_prefixlength 0",
				"rule del -4 pref 5301 not fwmark 0x4757 lookup 18263",
				"route del 0.0.0.0/0 dev gw0 table 18263",
				"route del 192.168.20.0/24 dev gw0 table main",
				"addr del 10.77.0.1/24 dev gw0",
			},
		},
	}

	f := newFake(gw0)
	m := newManager(f, Options{})
	for _, st := range steps {
		var err error
		if st.close {
			err = m.Close()
		} else {
			err = m.Set(st.cfg)
		}
		stepOps(t, st.name, err, f, st.want)
	}
	if !f.empty() {
		t.Errorf("after Close: fake kernel still holds addrs=%v routes=%v rules=%v", f.addrs, f.routes, f.rules)
	}
	if !f.closed {
		t.Errorf("after Close: netlink handle not closed")
	}
	if err := m.Set(base()); !errors.Is(err, ErrClosed) {
		t.Errorf("Set after Close = %v, want ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

// TestRulePriority checks that Options.RulePriority moves both rules.
func TestRulePriority(t *testing.T) {
	f := newFake(linkInfo{name: "gw1", index: 3, mtu: 1280, up: true})
	m := newManager(f, Options{RulePriority: 100})
	stepOps(t, "set", m.Set(&Config{Interface: "gw1", Routes: pfx("::/0")}), f, []string{
		"sysctl net.ipv4.conf.gw1.send_redirects=0",
		"route add ::/0 dev gw1 table 18263",
		"rule add -6 pref 100 lookup main suppress_prefixlength 0",
		"rule add -6 pref 101 not fwmark 0x4757 lookup 18263",
	})
}

// TestSetCollectsErrors checks that failing operations do not stop the
// others, that all errors come back, and that the next Set retries exactly
// what failed.
func TestSetCollectsErrors(t *testing.T) {
	errAddr := errors.New("injected addr failure")
	errRoute := errors.New("injected route failure")
	f := newFake(gw0)
	f.fail["addr add 10.77.0.1/24 dev gw0"] = errAddr
	f.fail["route add 192.168.20.0/24 dev gw0 table main"] = errRoute
	f.fail["sysctl net.ipv4.conf.gw0.send_redirects=0"] = errors.New("no such file")
	m := newManager(f, Options{})
	cfg := &Config{Interface: "gw0", Addrs: pfx("10.77.0.1/24"), Routes: pfx("192.168.20.0/24", "192.168.21.0/24", "0.0.0.0/0")}

	err := m.Set(cfg)
	for _, e := range []error{errAddr, errRoute} {
		if !errors.Is(err, e) {
			t.Errorf("Set err = %v, want it to wrap %v", err, e)
		}
	}
	if err != nil && !strings.Contains(err.Error(), "routing: route add 192.168.20.0/24 dev gw0 table main: injected route failure") {
		t.Errorf("Set err = %q, want it to name the failed operation", err)
	}
	if err != nil && strings.Contains(err.Error(), "no such file") {
		t.Errorf("Set err = %q, want the best-effort sysctl failure left out", err)
	}
	diffOps(t, "first set", f.takeOps(), []string{
		"link set gw0 up",
		"sysctl net.ipv4.conf.gw0.send_redirects=0",
		"addr add 10.77.0.1/24 dev gw0",
		"route add 0.0.0.0/0 dev gw0 table 18263",
		"route add 192.168.20.0/24 dev gw0 table main",
		"route add 192.168.21.0/24 dev gw0 table main",
		"rule add -4 pref 5300 lookup main suppress_prefixlength 0",
		"rule add -4 pref 5301 not fwmark 0x4757 lookup 18263",
	})

	clear(f.fail)
	stepOps(t, "retry", m.Set(cfg), f, []string{
		"addr add 10.77.0.1/24 dev gw0",
		"route add 192.168.20.0/24 dev gw0 table main",
	})

	// A failed removal is remembered and retried by Close.
	errDel := errors.New("injected del failure")
	f.fail["route del 192.168.21.0/24 dev gw0 table main"] = errDel
	f.fail["rule del -4 pref 5300 lookup main suppress_prefixlength 0"] = errDel
	if err := m.Set(nil); !errors.Is(err, errDel) {
		t.Errorf("Set(nil) = %v, want %v", err, errDel)
	}
	f.takeOps()
	clear(f.fail)
	stepOps(t, "close retries", m.Close(), f, []string{
		"rule del -4 pref 5300 lookup main suppress_prefixlength 0",
		"route del 192.168.21.0/24 dev gw0 table main",
	})
	if !f.empty() {
		t.Errorf("after Close: fake kernel not empty: addrs=%v routes=%v rules=%v", f.addrs, f.routes, f.rules)
	}
}

// TestSetInvalid checks that a bad config or a missing link touches nothing.
func TestSetInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty interface", Config{}, "empty interface name"},
		{"missing link", Config{Interface: "nope0"}, `link "nope0"`},
		{"negative mtu", Config{Interface: "gw0", MTU: -1}, "mtu -1"},
		{"main table", Config{Interface: "gw0", Table: 254}, "table 254"},
		{"local table", Config{Interface: "gw0", Table: 255}, "table 255"},
		{"bad address", Config{Interface: "gw0", Addrs: []netip.Prefix{{}}}, "invalid prefix"},
		{"mapped route", Config{Interface: "gw0", Routes: pfx("::ffff:10.0.0.0/104")}, "IPv4-mapped"},
		{"bad route among good ones", Config{Interface: "gw0", Routes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), {}}}, "invalid prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(gw0)
			m := newManager(f, Options{})
			err := m.Set(&tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "routing: ") {
				t.Errorf("Set(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
			}
			diffOps(t, tt.name, f.takeOps(), nil)
		})
	}
}

// TestLinkRecreated checks that a new link under the same name (the TUN was
// recreated, taking its addresses and routes with it) gets everything again,
// and that a renamed interface moves the state.
func TestLinkRecreated(t *testing.T) {
	f := newFake(gw0)
	m := newManager(f, Options{})
	cfg := &Config{Interface: "gw0", Addrs: pfx("10.77.0.1/24"), Routes: pfx("192.168.20.0/24", "0.0.0.0/0")}
	if err := m.Set(cfg); err != nil {
		t.Fatal(err)
	}
	f.takeOps()

	// The kernel drops link-bound state with the link.
	f.links["gw0"] = &linkInfo{name: "gw0", index: 8, mtu: 1500}
	clear(f.addrs)
	clear(f.routes)
	stepOps(t, "recreated", m.Set(cfg), f, []string{
		"link set gw0 up",
		"sysctl net.ipv4.conf.gw0.send_redirects=0",
		"addr add 10.77.0.1/24 dev gw0",
		"route add 0.0.0.0/0 dev gw0 table 18263",
		"route add 192.168.20.0/24 dev gw0 table main",
	})

	f.links["gw1"] = &linkInfo{name: "gw1", index: 9, mtu: 1500, up: true}
	cfg.Interface = "gw1"
	stepOps(t, "renamed", m.Set(cfg), f, []string{
		"route del 0.0.0.0/0 dev gw0 table 18263",
		"route del 192.168.20.0/24 dev gw0 table main",
		"addr del 10.77.0.1/24 dev gw0",
		"sysctl net.ipv4.conf.gw1.send_redirects=0",
		"addr add 10.77.0.1/24 dev gw1",
		"route add 0.0.0.0/0 dev gw1 table 18263",
		"route add 192.168.20.0/24 dev gw1 table main",
	})

	// The TUN owner closed the link before Close: only the rules remain.
	delete(f.links, "gw1")
	clear(f.addrs)
	clear(f.routes)
	stepOps(t, "close after link gone", m.Close(), f, []string{
		"rule del -4 pref 5300 lookup main suppress_prefixlength 0",
		"rule del -4 pref 5301 not fwmark 0x4757 lookup 18263",
	})
}

func TestCleanUp(t *testing.T) {
	r4 := func(prio, table, suppress int, invert bool, mark uint32) rule {
		return rule{family: 4, priority: prio, table: table, suppressPrefixlen: suppress, invert: invert, mark: mark}
	}
	tests := []struct {
		name   string
		iface  string
		table  int
		mark   uint32
		prio   int
		links  []linkInfo
		rules  []rule
		routes []route
		want   []string
	}{
		{
			name:  "nothing left over",
			iface: "gw0",
		},
		{
			name:  "crashed run with defaults",
			iface: "gw0",
			links: []linkInfo{gw0},
			rules: []rule{
				{family: 4, priority: 0, table: 255, suppressPrefixlen: -1},
				r4(5300, mainTable, 0, false, 0),
				r4(5301, DefaultTable, -1, true, DefaultFwMark),
				{family: 6, priority: 5300, table: mainTable, suppressPrefixlen: 0},
				{family: 6, priority: 5301, table: DefaultTable, suppressPrefixlen: -1, invert: true, mark: DefaultFwMark},
				r4(5300, 77, -1, false, 0),           // someone else's rule at our priority
				r4(5302, DefaultTable, -1, false, 0), // not at our priorities
				r4(32766, mainTable, -1, false, 0),
			},
			routes: []route{
				{dst: netip.MustParsePrefix("0.0.0.0/0"), table: DefaultTable},
				{dst: netip.MustParsePrefix("::/0"), table: DefaultTable},
				{dst: netip.MustParsePrefix("192.168.20.0/24"), table: mainTable},
			},
			want: []string{
				"rule del -4 pref 5300 lookup main suppress_prefixlength 0",
				"rule del -4 pref 5301 not fwmark 0x4757 lookup 18263",
				"rule del -6 pref 5300 lookup main suppress_prefixlength 0",
				"rule del -6 pref 5301 not fwmark 0x4757 lookup 18263",
				"route del 0.0.0.0/0 table 18263",
				"route del ::/0 table 18263",
				"link del gw0",
			},
		},
		{
			name:  "custom values and an old table behind our mark",
			iface: "gw0",
			table: 100, mark: 0x1, prio: 200,
			links: []linkInfo{{name: "gw0", index: 4}}, // not a tun: kept
			rules: []rule{
				r4(201, 99, -1, true, 0x1),
				r4(201, 100, -1, false, 0),
				r4(5301, DefaultTable, -1, true, DefaultFwMark),
			},
			routes: []route{
				{dst: netip.MustParsePrefix("0.0.0.0/0"), table: 100},
				{dst: netip.MustParsePrefix("0.0.0.0/0"), table: DefaultTable},
			},
			want: []string{
				"rule del -4 pref 201 not fwmark 0x1 lookup 99",
				"rule del -4 pref 201 lookup 100",
				"route del 0.0.0.0/0 table 100",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(tt.links...)
			f.rules = tt.rules
			for _, r := range tt.routes {
				f.routes[r] = 1
			}
			if err := cleanUp(f, tt.iface, tt.table, tt.mark, tt.prio); err != nil {
				t.Fatalf("cleanUp = %v", err)
			}
			diffOps(t, tt.name, f.takeOps(), tt.want)
		})
	}
}

func TestCleanUpCollectsErrors(t *testing.T) {
	errDel := errors.New("injected")
	f := newFake(gw0)
	f.rules = []rule{{family: 4, priority: 5300, table: mainTable, suppressPrefixlen: 0}}
	f.routes[route{dst: netip.MustParsePrefix("::/0"), table: DefaultTable}] = 7
	f.fail["rule del -4 pref 5300 lookup main suppress_prefixlength 0"] = errDel
	err := cleanUp(f, "gw0", 0, 0, 0)
	if !errors.Is(err, errDel) {
		t.Errorf("cleanUp = %v, want %v", err, errDel)
	}
	diffOps(t, "cleanup", f.takeOps(), []string{
		"rule del -4 pref 5300 lookup main suppress_prefixlength 0",
		"route del ::/0 table 18263",
		"link del gw0",
	})
	f.takeOps()
	if err := cleanUp(f, "gw0", 254, 0, 0); err == nil {
		t.Errorf("cleanUp with table 254 = nil, want error")
	}
	if err := cleanUp(f, "gw0", 0, 0, 32766); err == nil {
		t.Errorf("cleanUp with priority 32766 = nil, want error")
	}
	diffOps(t, "invalid cleanup", f.takeOps(), nil)
}

func TestNewRejectsPriority(t *testing.T) {
	for _, prio := range []int{-1, 32765, 40000} {
		if m, err := New(Options{RulePriority: prio}); err == nil {
			m.Close()
			t.Errorf("New(RulePriority: %d) = nil error, want one", prio)
		}
	}
}

func TestCoveredByAddr(t *testing.T) {
	addrs := pfx("10.77.0.1/24", "fd77::1/64", "10.9.0.1/32")
	tests := []struct {
		route string
		want  bool
	}{
		{"10.77.0.2/32", true},
		{"10.77.0.0/24", true},
		{"10.77.0.128/25", true},
		{"10.77.0.0/23", false},
		{"10.78.0.0/24", false},
		{"10.9.0.1/32", true},
		{"10.9.0.2/32", false},
		{"fd77::2/128", true},
		{"fd77::/48", false},
		{"::ffff:10.77.0.2/128", false},
		{"0.0.0.0/0", false},
	}
	for _, tt := range tests {
		if got := coveredByAddr(netip.MustParsePrefix(tt.route), addrs); got != tt.want {
			t.Errorf("coveredByAddr(%s) = %v, want %v", tt.route, got, tt.want)
		}
	}
}

// TestConcurrentSet is meant for -race: Set, Set(nil) and Close from
// several goroutines end with nothing installed.
func TestConcurrentSet(t *testing.T) {
	f := newFake(gw0)
	m := newManager(f, Options{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				cfg := &Config{Interface: "gw0", Addrs: pfx("10.77.0.1/24"), Routes: pfx("192.168.20.0/24")}
				if (i+j)%3 == 0 {
					cfg.Routes = append(cfg.Routes, netip.MustParsePrefix("0.0.0.0/0"))
				}
				if (i+j)%5 == 0 {
					cfg = nil
				}
				if err := m.Set(cfg); err != nil {
					t.Errorf("Set = %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := m.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if !f.empty() {
		t.Errorf("after Close: fake kernel not empty: addrs=%v routes=%v rules=%v", f.addrs, f.routes, f.rules)
	}
}

// TestRenameAfterFailedRemoval checks that when the interface changes and
// removing the state from the old link fails, the new link still gets all
// of it: what could not be removed is reported, not kept as "installed"
// (which kept it off the new link for good).
func TestRenameAfterFailedRemoval(t *testing.T) {
	errDel := errors.New("injected del failure")
	f := newFake(gw0, linkInfo{name: "gw1", index: 9, mtu: 1500, up: true, tun: true})
	m := newManager(f, Options{})
	cfg := &Config{Interface: "gw0", Addrs: pfx("10.77.0.1/24"), Routes: pfx("192.168.20.0/24")}
	if err := m.Set(cfg); err != nil {
		t.Fatal(err)
	}
	f.takeOps()

	f.fail["addr del 10.77.0.1/24 dev gw0"] = errDel
	f.fail["route del 192.168.20.0/24 dev gw0 table main"] = errDel
	cfg.Interface = "gw1"
	if err := m.Set(cfg); !errors.Is(err, errDel) {
		t.Errorf("Set(gw1) = %v, want it to wrap %v", err, errDel)
	}
	diffOps(t, "renamed", f.takeOps(), []string{
		"route del 192.168.20.0/24 dev gw0 table main",
		"addr del 10.77.0.1/24 dev gw0",
		"sysctl net.ipv4.conf.gw1.send_redirects=0",
		"addr add 10.77.0.1/24 dev gw1",
		"route add 192.168.20.0/24 dev gw1 table main",
	})

	clear(f.fail)
	stepOps(t, "converged", m.Set(cfg), f, nil)
}

// infoRecorder is a slog.Handler that keeps the messages of Info and
// higher records.
type infoRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *infoRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (r *infoRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *infoRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *infoRecorder) WithGroup(string) slog.Handler      { return r }

func (r *infoRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	msgs := r.msgs
	r.msgs = nil
	return msgs
}

// TestSetLogsChanges checks that every Set that changes the host state,
// removals alone included, says so once at Info, and that one that changes
// nothing stays quiet.
func TestSetLogsChanges(t *testing.T) {
	rec := &infoRecorder{}
	m := newManager(newFake(gw0), Options{Logger: slog.New(rec)})
	two := &Config{Interface: "gw0", Routes: pfx("192.168.20.0/24", "192.168.21.0/24")}
	one := &Config{Interface: "gw0", Routes: pfx("192.168.20.0/24")}
	steps := []struct {
		name string
		cfg  *Config
		want []string
	}{
		{"add", two, []string{"host state updated"}},
		{"same again", two, nil},
		{"remove only", one, []string{"host state updated"}},
		{"remove all", nil, []string{"host state removed"}},
		{"remove all again", nil, nil},
	}
	for _, st := range steps {
		if err := m.Set(st.cfg); err != nil {
			t.Fatalf("%s: Set = %v", st.name, err)
		}
		if got := rec.take(); !slices.Equal(got, st.want) {
			t.Errorf("%s: Info logs = %q, want %q", st.name, got, st.want)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if got := rec.take(); got != nil {
		t.Errorf("Close with nothing installed: Info logs = %q, want none", got)
	}
}

// TestCoveredAndProtocol: Covered installs the routes inside the link's own
// subnet too (a hub that announces its sites over BGP), and Protocol tags
// every route; a change of protocol replaces the routes.
func TestCoveredAndProtocol(t *testing.T) {
	f := newFake(gw0)
	m := newManager(f, Options{})
	cfg := &Config{Interface: "gw0", MTU: 1280, Addrs: pfx("10.77.0.1/24"), Routes: pfx("10.77.0.2/32", "192.168.20.0/24"), Protocol: 77}
	stepOps(t, "not covered", m.Set(cfg), f, []string{
		"link set gw0 mtu 1280",
		"link set gw0 up",
		"sysctl net.ipv4.conf.gw0.send_redirects=0",
		"addr add 10.77.0.1/24 dev gw0",
		"route add 192.168.20.0/24 dev gw0 table main proto 77",
	})
	cfg.Covered = true
	stepOps(t, "covered", m.Set(cfg), f, []string{"route add 10.77.0.2/32 dev gw0 table main proto 77"})
	cfg.Protocol = 78
	stepOps(t, "another protocol", m.Set(cfg), f, []string{
		"route del 10.77.0.2/32 dev gw0 table main proto 77",
		"route del 192.168.20.0/24 dev gw0 table main proto 77",
		"route add 10.77.0.2/32 dev gw0 table main proto 78",
		"route add 192.168.20.0/24 dev gw0 table main proto 78",
	})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}
