// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// addLoopbackUplink adds "lo" as an uplink of e. Binding to a device needs
// no privilege since Linux 5.7.
func addLoopbackUplink(t *testing.T, e *Endpoint) {
	t.Helper()
	if err := e.AddUplink("lo"); err != nil {
		t.Skipf("AddUplink(lo) needs SO_BINDTODEVICE: %v", err)
	}
}

func findUplink(e *Endpoint, name string) (uplinkInfo, bool) {
	for _, u := range e.uplinkList() {
		if u.Name == name {
			return u, true
		}
	}
	return uplinkInfo{}, false
}

// TestSwitchUplink dials on the endpoint's own socket, probes the loopback
// uplink, switches to it and checks traffic, paths, the migration count and
// its outage, and that the uplink's Transport outlives RemoveUplink while
// the conn uses it.
func TestAddrPort(t *testing.T) {
	tests := []struct {
		in   net.Addr
		want string
	}{
		{net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[::ffff:192.0.2.1]:4433")), "192.0.2.1:4433"},
		{net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[2001:db8::1]:4433")), "[2001:db8::1]:4433"},
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.2"), Port: 80}, "192.0.2.2:80"},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, "invalid AddrPort"},
	}
	for _, tt := range tests {
		if got := AddrPort(tt.in).String(); got != tt.want {
			t.Errorf("AddrPort(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestSwitchUplink(t *testing.T) {
	migrated := make(chan Migration, 4)
	p := newTestPair(t, func(cli, srv *Config) {
		cli.Listen = ""
	})
	p.cli.SetMobility(funcMobility{migrated: func(_ *Conn, m Migration) { migrated <- m }})
	addLoopbackUplink(t, p.cli)
	c, s := p.connect(t)
	exchange(t, c, s, []byte{0x45, 1})
	if got := c.Uplink(); got != "" {
		t.Errorf("Uplink() = %q before any switch, want \"\"", got)
	}
	if err := c.SwitchUplink("lo"); !errors.Is(err, errNoStandby) {
		t.Errorf("SwitchUplink(lo) before a probe = %v, want errNoStandby", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ProbeUplink(ctx, "lo"); err != nil {
		t.Fatalf("ProbeUplink(lo): %v", err)
	}
	up, _ := findUplink(p.cli, "lo")
	paths := c.Paths()
	if len(paths) != 2 || !paths[0].Active || paths[0].Uplink != "" || paths[1].Uplink != "lo" || paths[1].Active || !paths[1].Validated || paths[1].Local != up.Local {
		t.Fatalf("Paths() after probe = %+v, want the active main path and a validated standby on lo at %v", paths, up.Local)
	}
	if err := c.SwitchUplink("lo"); err != nil {
		t.Fatalf("SwitchUplink(lo): %v", err)
	}
	if got := c.Uplink(); got != "lo" {
		t.Errorf("Uplink() after switch = %q, want lo", got)
	}
	for i := range 3 {
		exchange(t, c, s, []byte{0x45, 2, byte(i)})
		exchange(t, s, c, []byte{0x45, 3, byte(i)})
	}
	select {
	case m := <-migrated:
		if m.From != "" || m.To != "lo" || !m.Measured || m.Outage <= 0 || m.Outage > 5*time.Second {
			t.Errorf("Migrated got %+v, want from \"\" to lo with a measured outage in (0, 5s]", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Migrated not called within 5 s of traffic after the switch")
	}
	n, outage := c.Migrations()
	if n != 1 || outage <= 0 {
		t.Errorf("Migrations() = %d, %v; want 1 and a positive outage", n, outage)
	}
	paths = c.Paths()
	if len(paths) != 1 || paths[0].Uplink != "lo" || paths[0].Local != up.Local || !paths[0].Active {
		t.Errorf("Paths() after switch = %+v, want only the active path on lo at %v", paths, up.Local)
	}
	if got := c.LocalAddr().String(); got != up.Local.String() {
		t.Errorf("LocalAddr() = %s after switch, want %s", got, up.Local)
	}
	// The server follows: it sees the uplink's port.
	if !pollFor(5*time.Second, func() bool { return AddrPort(s.RemoteAddr()).Port() == up.Local.Port() }) {
		t.Errorf("server RemoteAddr() = %v, want port %d of the uplink", s.RemoteAddr(), up.Local.Port())
	}

	if err := p.cli.RemoveUplink("lo"); err != nil {
		t.Fatalf("RemoveUplink: %v", err)
	}
	if u, ok := findUplink(p.cli, "lo"); !ok || !u.Removed || u.Users != 1 {
		t.Errorf("after RemoveUplink with a live conn: uplinkList() = %+v, want lo removed with 1 user", p.cli.uplinkList())
	}
	exchange(t, c, s, []byte{0x45, 4}) // the Transport still works
	if err := c.ProbeUplink(ctx, "lo"); !errors.Is(err, errUnknownUplink) {
		t.Errorf("ProbeUplink on a removed uplink = %v, want errUnknownUplink", err)
	}
	if err := c.Close("done"); err != nil {
		t.Fatal(err)
	}
	if _, ok := findUplink(p.cli, "lo"); ok {
		t.Errorf("uplinkList() = %+v after the last user closed, want lo gone", p.cli.uplinkList())
	}
}

// TestDialVia dials on an uplink and checks the bookkeeping of its users.
func TestDialVia(t *testing.T) {
	p := newTestPair(t, func(cli, srv *Config) { cli.Listen = "" })
	addLoopbackUplink(t, p.cli)
	if err := p.cli.AddUplink("lo"); err != nil {
		t.Errorf("second AddUplink(lo) = %v, want nil", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.cli.DialVia(ctx, "nope0", p.srv.LocalAddr().String(), p.sk.pub); !errors.Is(err, errUnknownUplink) {
		t.Errorf("DialVia(nope0) = %v, want errUnknownUplink", err)
	}
	acc := make(chan *Conn, 1)
	go func() {
		s, _ := p.srv.Accept(ctx)
		acc <- s
	}()
	c, err := p.cli.DialVia(ctx, "lo", p.srv.LocalAddr().String(), p.sk.pub)
	if err != nil {
		t.Fatalf("DialVia(lo): %v", err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("no accepted conn")
	}
	exchange(t, c, s, []byte{0x45, 1})
	up, _ := findUplink(p.cli, "lo")
	if got := c.Uplink(); got != "lo" || up.Users != 1 {
		t.Errorf("Uplink() = %q with %d users, want lo with 1", got, up.Users)
	}
	if got := AddrPort(s.RemoteAddr()).Port(); got != up.Local.Port() {
		t.Errorf("server sees port %d, want the uplink's %d", got, up.Local.Port())
	}
	if err := c.Close("done"); err != nil {
		t.Fatal(err)
	}
	if up, _ := findUplink(p.cli, "lo"); up.Users != 0 || up.Removed {
		t.Errorf("after Close: %+v, want lo kept with 0 users", up)
	}
	if err := p.cli.RemoveUplink("lo"); err != nil {
		t.Fatal(err)
	}
	if got := p.cli.uplinkList(); len(got) != 0 {
		t.Errorf("uplinkList() = %+v after removing an unused uplink, want none", got)
	}
	if err := p.cli.RemoveUplink("lo"); err != nil {
		t.Errorf("second RemoveUplink = %v, want nil", err)
	}
}

// TestPathDeadCallback blackholes the path and expects PathDead once
// per suspicion, well before DeadAfter closes the conn.
func TestPathDeadCallback(t *testing.T) {
	dead := make(chan time.Time, 8)
	p := newTestPair(t, func(cli, srv *Config) {
		for _, c := range []*Config{cli, srv} {
			c.Heartbeat = 100 * time.Millisecond
			c.DeadAfter = 20 * time.Second
		}
		cli.PathDeadFloor = 300 * time.Millisecond
	})
	p.cli.SetMobility(funcMobility{dead: func(*Conn) { dead <- time.Now() }})
	proxy, c, _ := dialViaProxy(t, p)
	time.Sleep(500 * time.Millisecond)
	select {
	case <-dead:
		t.Fatal("PathDead called while the path works")
	default:
	}
	for round := range 2 {
		proxy.drop.Store(true)
		start := time.Now()
		select {
		case at := <-dead:
			// A heartbeat goes out within 100 ms, then 3 RTT (tiny) + 300 ms.
			if d := at.Sub(start); d > 3*time.Second {
				t.Errorf("round %d: PathDead after %v, want within about 400 ms", round, d)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: PathDead not called within 10 s of a blackhole", round)
		}
		select {
		case <-dead:
			t.Errorf("round %d: PathDead called twice for one suspicion", round)
		case <-time.After(time.Second):
		}
		proxy.drop.Store(false)
		time.Sleep(500 * time.Millisecond) // heartbeats flow: the suspicion ends
		if c.Err() != nil {
			t.Fatalf("conn died: %v", c.Err())
		}
	}
}

// pollFor calls f every 20 ms until it returns true or d passed.
func pollFor(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// TestDialLoopWaitsForUplink: with PickUplink reporting no usable uplink
// the loop dials nothing, not even on the Endpoint's own socket; after
// UplinksChanged it dials on the uplink named; a conn it owns that is
// abandoned is redialed at once, long before RedialMin, on the uplink
// again.
func TestDialLoopWaitsForUplink(t *testing.T) {
	var pick atomic.Value // string; "" means none usable
	pick.Store("")
	p := newTestPair(t, func(cli, srv *Config) {
		cli.Listen = ""
		cli.RedialMin, cli.RedialMax = 10*time.Second, 20*time.Second
	})
	p.cli.SetMobility(funcMobility{pick: func() (string, bool) {
		n := pick.Load().(string)
		return n, n != ""
	}})
	addLoopbackUplink(t, p.cli)
	accepted := acceptAll(t, p.srv)
	ups, _ := p.dialLoop(t)

	select {
	case c := <-ups:
		t.Fatalf("dialed on %q while no uplink was usable", c.Uplink())
	case <-time.After(500 * time.Millisecond):
	}
	pick.Store("lo")
	p.cli.UplinksChanged()
	var c *Conn
	select {
	case c = <-ups:
	case <-time.After(10 * time.Second):
		t.Fatal("no dial within 10 s of UplinksChanged")
	}
	if got := c.Uplink(); got != "lo" {
		t.Errorf("Uplink() = %q, want lo", got)
	}
	s := <-accepted
	exchange(t, c, s, []byte{0x45, 1})

	start := time.Now()
	c.Abandon("test: path gone")
	var ce *closeError
	if err := c.Err(); !errors.As(err, &ce) || ce.Reason != "test: path gone" || ce.Remote {
		t.Errorf("Err() after Abandon = %v, want a local closeError with the reason", err)
	}
	select {
	case c2 := <-ups:
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("redial after Abandon took %v, want it at once (RedialMin is 10 s)", took)
		}
		if got := c2.Uplink(); got != "lo" {
			t.Errorf("redialed conn Uplink() = %q, want lo", got)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("no redial within 8 s of Abandon (RedialMin is 10 s)")
	}
}

// funcMobility is a Mobility made of functions; a nil one does nothing
// (pick: the Endpoint's own socket).
type funcMobility struct {
	pick     func() (string, bool)
	dead     func(*Conn)
	migrated func(*Conn, Migration)
}

func (f funcMobility) PickUplink() (string, bool) {
	if f.pick == nil {
		return "", true
	}
	return f.pick()
}

func (f funcMobility) PathDead(c *Conn) {
	if f.dead != nil {
		f.dead(c)
	}
}

func (f funcMobility) Migrated(c *Conn, m Migration) {
	if f.migrated != nil {
		f.migrated(c, m)
	}
}

// TestDialLoopOn: the loop waits while its uplink is not added, dials on
// it as soon as AddUplink adds it whatever PickUplink says, and its conns
// are pinned: no PathDead on a blackholed path, no probe or switch; an
// abandoned one is redialed on the same uplink, after a removal once the
// uplink is back.
func TestDialLoopOn(t *testing.T) {
	dead := make(chan *Conn, 8)
	p := newTestPair(t, func(cli, srv *Config) {
		cli.Listen = ""
		cli.RedialMin, cli.RedialMax = 10*time.Second, 20*time.Second
		for _, c := range []*Config{cli, srv} {
			c.Heartbeat = 100 * time.Millisecond
			c.DeadAfter = 20 * time.Second
		}
		cli.PathDeadFloor = 200 * time.Millisecond
	})
	p.cli.SetMobility(funcMobility{
		pick: func() (string, bool) { return "", false }, // DialLoop would wait forever
		dead: func(c *Conn) { dead <- c },
	})
	proxy := newUDPProxy(t, p.srv.LocalAddr())
	accepted := acceptAll(t, p.srv)
	ups := make(chan *Conn, 4)
	background(t, func(ctx context.Context) {
		p.cli.DialLoopOn(ctx, "lo", proxy.pc.LocalAddr().String(), p.sk.pub, func(c *Conn) { ups <- c })
	})
	select {
	case c := <-ups:
		t.Fatalf("dialed on %q before the uplink was added", c.Uplink())
	case <-time.After(300 * time.Millisecond):
	}
	start := time.Now()
	addLoopbackUplink(t, p.cli)
	var c *Conn
	select {
	case c = <-ups:
	case <-time.After(8 * time.Second):
		t.Fatal("no dial within 8 s of AddUplink (RedialMax is 20 s)")
	}
	t.Logf("dialed %v after AddUplink", time.Since(start).Round(time.Millisecond))
	s := <-accepted
	exchange(t, c, s, []byte{0x45, 1})
	if c.Uplink() != "lo" || !c.Pinned() {
		t.Errorf("Uplink() = %q, Pinned() = %v; want lo, true", c.Uplink(), c.Pinned())
	}
	if s.Pinned() {
		t.Error("accepted conn Pinned() = true, want false")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.ProbeUplink(ctx, "lo"); !errors.Is(err, errPinned) {
		t.Errorf("ProbeUplink on a pinned conn = %v, want errPinned", err)
	}
	if err := c.SwitchUplink("lo"); !errors.Is(err, errPinned) {
		t.Errorf("SwitchUplink on a pinned conn = %v, want errPinned", err)
	}

	// Its health is the monitor's: Silent, and no PathDead.
	health := watchHealth(c)
	proxy.drop.Store(true)
	start = time.Now()
	silent := false
	for deadline := time.After(1500 * time.Millisecond); ; { // PathDead would come after ~300 ms
		select {
		case <-dead:
			t.Error("PathDead called for a pinned conn")
		case hc := <-health:
			silent = silent || hc.new == HealthSilent
			t.Logf("pinned conn %v after %v: %s", hc.new, time.Since(start).Round(time.Millisecond), hc.reason)
			continue
		case <-deadline:
		}
		break
	}
	if !silent {
		t.Error("the monitor of the pinned conn reported no Silent within 1.5 s of the blackhole")
	}
	proxy.drop.Store(false)

	start = time.Now()
	c.Abandon("test: path gone")
	select {
	case c = <-ups:
		if c.Uplink() != "lo" || !c.Pinned() {
			t.Errorf("redialed conn: Uplink() = %q, Pinned() = %v; want lo, true", c.Uplink(), c.Pinned())
		}
		t.Logf("redialed %v after Abandon", time.Since(start).Round(time.Millisecond))
	case <-time.After(8 * time.Second):
		t.Fatal("no redial within 8 s of Abandon (RedialMin is 10 s)")
	}
	<-accepted

	// Removed: the loop waits; back: it dials at once.
	if err := p.cli.RemoveUplink("lo"); err != nil {
		t.Fatal(err)
	}
	c.Abandon("test: uplink gone")
	select {
	case c := <-ups:
		t.Fatalf("dialed on %q while the uplink was removed", c.Uplink())
	case <-time.After(500 * time.Millisecond):
	}
	addLoopbackUplink(t, p.cli)
	select {
	case c = <-ups:
		if c.Uplink() != "lo" {
			t.Errorf("Uplink() = %q after the uplink came back, want lo", c.Uplink())
		}
	case <-time.After(8 * time.Second):
		t.Fatal("no dial within 8 s of the uplink coming back")
	}
}
