// SPDX-License-Identifier: MIT

package routing

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

var nsSeq atomic.Int32

// enterNetns moves the calling test goroutine into a fresh, named network
// namespace. It locks the goroutine to its OS thread and never unlocks it:
// when the test goroutine ends, Go discards the thread, so no other
// goroutine ever runs in the namespace by accident. Cleanups registered
// after enterNetns run before the namespace is removed. Subtests (which run
// in new goroutines) must not be used after this call.
func enterNetns(t *testing.T) *netlink.Handle {
	t.Helper()
	labtest.RequireRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("netns.Get: %v", err)
	}
	name := fmt.Sprintf("gwrouting-%d-%d", os.Getpid(), nsSeq.Add(1))
	ns, err := netns.NewNamed(name) // also switches this thread into it
	if err != nil {
		orig.Close()
		t.Fatalf("netns.NewNamed(%q): %v", name, err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.Set(orig); err != nil {
			t.Errorf("back to the original namespace: %v", err)
		}
		orig.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("netns.DeleteNamed(%q): %v", name, err)
		}
	})
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink.NewHandle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// createTUN creates a TUN device in the current (test) namespace and closes
// it at cleanup.
func createTUN(t *testing.T, name string) wgtun.Device {
	t.Helper()
	dev, err := wgtun.CreateTUN(name, 1420)
	if err != nil {
		t.Fatalf("CreateTUN(%q): %v", name, err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

// addVeth adds the veth pair a, b in the test namespace of h and returns
// both ends.
func addVeth(t *testing.T, h *netlink.Handle, a, b string) (netlink.Link, netlink.Link) {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	return linkByName(t, h, a), linkByName(t, h, b)
}

// linkByName returns the link name in the test namespace of h.
func linkByName(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// snapshot describes the namespace's routing state in ip(8)-like lines,
// sorted, for comparisons: global addresses on all links, unicast routes in
// the main table and in table, and rules except the kernel's defaults.
func snapshot(t *testing.T, h *netlink.Handle, table int) []string {
	t.Helper()
	var out []string
	links, err := h.LinkList()
	if err != nil {
		t.Fatalf("LinkList: %v", err)
	}
	names := map[int]string{}
	for _, l := range links {
		a := l.Attrs()
		names[a.Index] = a.Name
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatalf("AddrList(%s): %v", a.Name, err)
		}
		for _, ad := range addrs {
			if ad.IP.IsLinkLocalUnicast() {
				continue
			}
			out = append(out, fmt.Sprintf("addr %s dev %s", ad.IPNet, a.Name))
		}
	}
	for _, tb := range []int{mainTable, table} {
		rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: tb}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatalf("RouteListFiltered(table %d): %v", tb, err)
		}
		for _, r := range rs {
			if r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast() || r.Dst != nil && r.Dst.IP.IsMulticast() {
				continue
			}
			dst := "default" // netlink before v1.3 left Dst nil for default routes
			if r.Dst != nil {
				dst = r.Dst.String()
			}
			out = append(out, fmt.Sprintf("route %s dev %s table %s", dst, names[r.LinkIndex], tableString(r.Table)))
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := h.RuleList(fam)
		if err != nil {
			t.Fatalf("RuleList: %v", err)
		}
		for _, r := range rs {
			if r.Priority == 0 || r.Priority == 32766 || r.Priority == 32767 {
				continue
			}
			f := 4
			if fam == netlink.FAMILY_V6 {
				f = 6
			}
			out = append(out, "rule "+rule{family: f, priority: r.Priority, table: r.Table,
				suppressPrefixlen: r.SuppressPrefixlen, invert: r.Invert, mark: r.Mark}.String())
		}
	}
	slices.Sort(out)
	return out
}

func wantLines(t *testing.T, step string, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s: missing %q in state:%s", step, w, fmtOps(got))
		}
	}
}

func noLines(t *testing.T, step string, got []string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if slices.Contains(got, w) {
			t.Errorf("%s: unexpected %q in state:%s", step, w, fmtOps(got))
		}
	}
}

// routeVia returns the name of the link the kernel picks for dst, with the
// given fwmark, or "" when it has no route.
func routeVia(t *testing.T, h *netlink.Handle, dst string, mark uint32) string {
	t.Helper()
	rs, err := h.RouteGetWithOptions(net.ParseIP(dst), &netlink.RouteGetOptions{Mark: mark})
	if err != nil || len(rs) == 0 {
		return ""
	}
	l, err := h.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		t.Fatalf("LinkByIndex(%d): %v", rs[0].LinkIndex, err)
	}
	return l.Attrs().Name
}

func TestKernelSetAndClose(t *testing.T) {
	h := enterNetns(t)
	createTUN(t, "gw0")
	// An uplink with a main-table default route, as on a real site.
	createTUN(t, "up0")
	up0 := linkByName(t, h, "up0")
	if err := h.LinkSetUp(up0); err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(up0, nlAddrOfPrefix(netip.MustParsePrefix("198.18.0.2/24"))); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: up0.Attrs().Index, Dst: nlIPNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: net.ParseIP("198.18.0.1")}); err != nil {
		t.Fatal(err)
	}

	m, err := New(Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	cfg := &Config{
		Interface: "gw0",
		MTU:       1380,
		Addrs:     pfx("198.19.0.1/24", "2001:db8:77::1/64"),
		Routes:    pfx("198.19.0.2/32", "192.0.2.0/24", "2001:db8:1::/48", "0.0.0.0/0", "::/0"),
	}
	if err := m.Set(cfg); err != nil {
		t.Fatalf("Set: %v", err)
	}

	gw := linkByName(t, h, "gw0")
	if got := gw.Attrs().MTU; got != 1380 {
		t.Errorf("gw0 MTU = %d, want 1380", got)
	}
	if gw.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("gw0 is not up")
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/gw0/send_redirects"); err != nil || strings.TrimSpace(string(b)) != "0" {
		t.Errorf("gw0 send_redirects = %q, %v; want 0", b, err)
	}
	v6, err := h.AddrList(gw, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range v6 {
		if a.IP.Equal(net.ParseIP("2001:db8:77::1")) && (a.Flags&unix.IFA_F_NODAD == 0 || a.Flags&unix.IFA_F_TENTATIVE != 0) {
			t.Errorf("2001:db8:77::1 flags = %#x, want nodad and not tentative", a.Flags)
		}
	}

	first := snapshot(t, h, DefaultTable)
	wantLines(t, "after Set", first,
		"addr 198.19.0.1/24 dev gw0",
		"addr 2001:db8:77::1/64 dev gw0",
		"route 192.0.2.0/24 dev gw0 table main",
		"route 2001:db8:1::/48 dev gw0 table main",
		"route 198.19.0.0/24 dev gw0 table main", // connected, from the kernel
		"route 0.0.0.0/0 dev gw0 table 18263",
		"route ::/0 dev gw0 table 18263",
		"route 0.0.0.0/0 dev up0 table main",
		"rule -4 pref 5300 lookup main suppress_prefixlength 0",
		"rule -4 pref 5301 not fwmark 0x4757 lookup 18263",
		"rule -6 pref 5300 lookup main suppress_prefixlength 0",
		"rule -6 pref 5301 not fwmark 0x4757 lookup 18263",
	)
	noLines(t, "after Set", first, "route 198.19.0.2/32 dev gw0 table main")

	// What the rules are for: unmarked traffic enters the tunnel, the
	// daemon's marked traffic and the uplink's own subnet do not.
	for _, tt := range []struct {
		dst  string
		mark uint32
		want string
	}{
		{"198.51.100.1", 0, "gw0"},
		{"198.51.100.1", DefaultFwMark, "up0"},
		{"198.18.0.1", 0, "up0"},
		{"192.0.2.9", DefaultFwMark, "gw0"},
		{"198.19.0.2", 0, "gw0"},
		{"2001:db8:2::1", 0, "gw0"},
	} {
		if got := routeVia(t, h, tt.dst, tt.mark); got != tt.want {
			t.Errorf("route get %s mark %#x: via %q, want %q", tt.dst, tt.mark, got, tt.want)
		}
	}

	if err := m.Set(cfg); err != nil {
		t.Fatalf("second Set: %v", err)
	}
	if second := snapshot(t, h, DefaultTable); !slices.Equal(first, second) {
		t.Errorf("second identical Set changed the state:\nbefore:%s\nafter:%s", fmtOps(first), fmtOps(second))
	}

	// Remove the v6 default and a peer's routes.
	cfg.Routes = pfx("192.0.2.0/24", "0.0.0.0/0")
	if err := m.Set(cfg); err != nil {
		t.Fatalf("Set without v6 default: %v", err)
	}
	st := snapshot(t, h, DefaultTable)
	wantLines(t, "without v6 default", st,
		"route 192.0.2.0/24 dev gw0 table main",
		"rule -4 pref 5301 not fwmark 0x4757 lookup 18263",
	)
	noLines(t, "without v6 default", st,
		"route 2001:db8:1::/48 dev gw0 table main",
		"rule -6 pref 5300 lookup main suppress_prefixlength 0",
		"rule -6 pref 5301 not fwmark 0x4757 lookup 18263",
	)

	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	after := snapshot(t, h, DefaultTable)
	for _, line := range after {
		if strings.Contains(line, "gw0") || strings.HasPrefix(line, "rule ") || strings.Contains(line, "table 18263") {
			t.Errorf("after Close: leftover %q", line)
		}
	}
	if _, err := h.LinkByName("gw0"); err != nil {
		t.Errorf("after Close: link gw0 gone (%v), want it left to its owner", err)
	}
}

// TestKernelCloseAfterTUN follows the daemon's shutdown order: the TUN is
// closed first (taking addresses and routes with it), then the Manager.
func TestKernelCloseAfterTUN(t *testing.T) {
	h := enterNetns(t)
	dev := createTUN(t, "gw0")
	m, err := New(Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := m.Set(&Config{Interface: "gw0", Addrs: pfx("198.19.0.1/24"), Routes: pfx("0.0.0.0/0", "192.0.2.0/24")}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	dev.Close()
	if err := m.Close(); err != nil {
		t.Errorf("Close after the TUN went away = %v, want nil", err)
	}
	for _, line := range snapshot(t, h, DefaultTable) {
		if strings.HasPrefix(line, "rule ") {
			t.Errorf("after Close: leftover %q", line)
		}
	}
}

// TestKernelCleanUp leaves the state of a "crashed" Manager (rules, a table
// route, and a TUN that stayed around) and checks that CleanUp removes it,
// and only it.
func TestKernelCleanUp(t *testing.T) {
	h := enterNetns(t)
	createTUN(t, "gw0")

	// A veth named like our interface is not a tun: CleanUp keeps it.
	addVeth(t, h, "gwv0", "gwv1")
	// Someone else's rule at our priority with another table stays.
	foreign := netlink.NewRule()
	foreign.Priority, foreign.Table, foreign.Family = 5300, 77, unix.AF_INET
	if err := h.RuleAdd(foreign); err != nil {
		t.Fatalf("add foreign rule: %v", err)
	}

	crashed, err := New(Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := crashed.Set(&Config{Interface: "gw0", Addrs: pfx("198.19.0.1/24", "2001:db8:77::1/64"), Routes: pfx("0.0.0.0/0", "::/0", "192.0.2.0/24")}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	crashed.nl.close() // the crash: nothing removed
	st := snapshot(t, h, DefaultTable)
	wantLines(t, "before CleanUp", st, "route 0.0.0.0/0 dev gw0 table 18263", "rule -6 pref 5301 not fwmark 0x4757 lookup 18263")

	if err := CleanUp("gwv0", 0, 0, 0); err != nil {
		t.Fatalf("CleanUp(gwv0): %v", err)
	}
	if _, err := h.LinkByName("gwv0"); err != nil {
		t.Errorf("CleanUp deleted the veth gwv0: %v", err)
	}
	// The rules and table routes are gone although gw0 still exists.
	st = snapshot(t, h, DefaultTable)
	wantLines(t, "after CleanUp(gwv0)", st, "addr 198.19.0.1/24 dev gw0", "route 192.0.2.0/24 dev gw0 table main")
	for _, line := range st {
		if strings.Contains(line, "table 18263") || strings.HasPrefix(line, "rule ") && line != "rule -4 pref 5300 lookup 77" {
			t.Errorf("after CleanUp(gwv0): leftover %q", line)
		}
	}
	if err := CleanUp("gw0", 0, 0, 0); err != nil {
		t.Fatalf("CleanUp(gw0): %v", err)
	}
	if _, err := h.LinkByName("gw0"); err == nil {
		t.Errorf("after CleanUp: tun gw0 still exists")
	}
	st = snapshot(t, h, DefaultTable)
	for _, line := range st {
		if strings.Contains(line, "table 18263") || strings.Contains(line, "gw0") ||
			strings.HasPrefix(line, "rule ") && line != "rule -4 pref 5300 lookup 77" {
			t.Errorf("after CleanUp: leftover %q", line)
		}
	}
	wantLines(t, "after CleanUp", st, "rule -4 pref 5300 lookup 77")

	if err := CleanUp("gw0", 0, 0, 0); err != nil {
		t.Errorf("CleanUp with nothing left = %v, want nil", err)
	}
}

// TestKernelKeepsForeignRoute: an allowed-IP equal to a route Godwit did not
// add (here a LAN's connected route on a veth) is an error naming that
// link, and neither Set nor Close takes the LAN's route away.
func TestKernelKeepsForeignRoute(t *testing.T) {
	h := enterNetns(t)
	lan, _ := addVeth(t, h, "lan0", "lan1")
	if err := h.AddrAdd(lan, &netlink.Addr{IPNet: nlIPNet(netip.MustParsePrefix("192.0.2.1/24"))}); err != nil {
		t.Fatalf("AddrAdd: %v", err)
	}
	if err := h.LinkSetUp(lan); err != nil {
		t.Fatal(err)
	}
	createTUN(t, "gw0")
	m, err := New(Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	err = m.Set(&Config{Interface: "gw0", Addrs: pfx("198.19.0.1/24"), Routes: pfx("192.0.2.0/24", "198.51.100.0/24")})
	if err == nil || !strings.Contains(err.Error(), "lan0") {
		t.Errorf("Set with a LAN's prefix = %v, want an error naming lan0", err)
	}
	wantLines(t, "after Set", snapshot(t, h, DefaultTable),
		"route 192.0.2.0/24 dev lan0 table main", "route 198.51.100.0/24 dev gw0 table main")
	// A second Set is still idempotent for the route it did add.
	_ = m.Set(&Config{Interface: "gw0", Addrs: pfx("198.19.0.1/24"), Routes: pfx("192.0.2.0/24", "198.51.100.0/24")})
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	got := snapshot(t, h, DefaultTable)
	wantLines(t, "after Close", got, "route 192.0.2.0/24 dev lan0 table main")
	noLines(t, "after Close", got, "route 198.51.100.0/24 dev gw0 table main")
}
