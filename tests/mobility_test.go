// SPDX-License-Identifier: MIT

package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// The mobility system tests run a hub and a site with the uplinks wifi0
// (preferred) and cell0 in the mobility lab (mobility_topo_test.go) and
// take uplinks away under traffic. They run in parallel with each other;
// each builds its own lab.

var (
	mobHubTun  = netip.MustParseAddr("198.19.0.1")
	mobSiteTun = netip.MustParseAddr("198.19.0.2")
)

// mobLab is the mobility lab with both daemons running and connected.
type mobLab struct {
	*mobTopo
	hubD, siteD *labtest.Daemon
	siteNotify  *notifySock // what the site tells systemd
}

// mobConfs makes keys and returns the configs of the mobility lab's hub
// and site; the site has both uplinks.
func mobConfs(t *testing.T, tp *mobTopo) (hub, site nodeConf) {
	t.Helper()
	hk, sk := genKey(t, tp.lab, "mhub"), genKey(t, tp.lab, "msite")
	hub = nodeConf{name: "mhub", key: hk, addrs: []string{"198.19.0.1/24"}, listen: "0.0.0.0:4433",
		peers: []peerConf{{name: "site", pub: sk.pub, allowed: []string{"198.19.0.2/32"}}}}
	site = nodeConf{name: "msite", key: sk, addrs: []string{"198.19.0.2/24"},
		extra: []string{`uplinks = ["wifi0", "cell0"]`},
		// One connection that moves between the uplinks: what these
		// tests measure (with two uplinks the default is a connection
		// per uplink, tests/multipath_test.go).
		peers: []peerConf{{name: "hub", pub: hk.pub, allowed: []string{"198.19.0.1/32"}, endpoint: mobHub.String(),
			extra: []string{`multipath = "off"`}}}}
	return hub, site
}

func startMobLab(t *testing.T) *mobLab {
	t.Helper()
	tp := newMobilityTopo(t, mobOpts{})
	hub, site := mobConfs(t, tp)
	site.extra = append(site.extra, `metrics_listen = "127.0.0.1:9586"`)
	ml := &mobLab{mobTopo: tp}
	ml.siteNotify = newNotifySock(t, tp.lab, "msite")
	ml.hubD = startNode(t, tp.lab, tp.hub, hub)
	ml.siteD = startNode(t, tp.lab, tp.site, site, "NOTIFY_SOCKET="+ml.siteNotify.path)
	ml.siteD.WaitConnected(t, "hub")
	ml.hubD.WaitConnected(t, "site")
	// The first path is on the preferred uplink, and cell0 becomes a
	// validated standby.
	p := ml.waitPaths(t, 10*time.Second, "wifi0 active, cell0 validated", func(p *ctl.PeerStatus) bool {
		return p.ActiveUplink() == "wifi0" && p.ValidatedStandby("cell0")
	})
	if p.Migrations != 0 {
		t.Errorf("migrations at start = %d, want 0", p.Migrations)
	}
	return ml
}

// waitPaths polls the site's view of the hub until ok, and fails after
// within.
func (ml *mobLab) waitPaths(t *testing.T, within time.Duration, what string, ok func(*ctl.PeerStatus) bool) *ctl.PeerStatus {
	t.Helper()
	var p *ctl.PeerStatus
	if !labtest.Eventually(within, func() bool { p = ml.siteD.Peer(t, "hub"); return ok(p) }) {
		t.Fatalf("site: no %s within %v; last: state %s, migrations %d, paths %+v", what, within, p.State, p.Migrations, p.Paths)
	}
	return p
}

// waitMigrated waits until the site made n migrations and is on uplink.
func (ml *mobLab) waitMigrated(t *testing.T, n uint64, uplink string) *ctl.PeerStatus {
	t.Helper()
	return ml.waitPaths(t, 10*time.Second, fmt.Sprintf("migration #%d to %s", n, uplink), func(p *ctl.PeerStatus) bool {
		return p.State == ctl.StateConnected && p.Migrations >= n && p.ActiveUplink() == uplink
	})
}

// checkOneHandshake fails unless each side logged exactly one connection.
func (ml *mobLab) checkOneHandshake(t *testing.T) {
	t.Helper()
	if got := ml.hubD.LogLines("peer connected", "peer=site"); len(got) != 1 {
		t.Errorf("hub logged %d connections of the site, want 1 (no new handshake):\n%s", len(got), strings.Join(got, "\n"))
	}
	if got := ml.siteD.LogLines("peer connected", "peer=hub"); len(got) != 1 {
		t.Errorf("site logged %d connections to the hub, want 1 (no new handshake):\n%s", len(got), strings.Join(got, "\n"))
	}
}

// logMigrations reports the site's "migrated" log lines.
func (ml *mobLab) logMigrations(t *testing.T) {
	t.Helper()
	for _, l := range ml.siteD.LogLines("msg=migrated") {
		t.Logf("site: %s", l)
	}
}

// pinger pings dst from ns at 50 Hz, in 1 s rounds, until stopped.
type pinger struct {
	sent, received atomic.Int64
	stop           chan struct{}
	done           chan struct{}
}

func startPinger(t *testing.T, ns *netlab.NS, dst netip.Addr) *pinger {
	t.Helper()
	p := &pinger{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		deadline := time.Now().Add(3 * time.Minute) // bounded whatever happens
		for time.Now().Before(deadline) {
			select {
			case <-p.stop:
				return
			default:
			}
			r, err := ns.Ping(dst, 50, 20*time.Millisecond, 300*time.Millisecond)
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			p.sent.Add(int64(r.Sent))
			p.received.Add(int64(r.Received))
		}
	}()
	t.Cleanup(func() { p.end() })
	return p
}

// end stops the pinger and returns the requests sent and lost.
func (p *pinger) end() (sent, lost int64) {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	return p.sent.Load(), p.sent.Load() - p.received.Load()
}

// stream is an inner TCP connection from the site to the hub that carries
// a known byte pattern, checked on every byte.
type stream struct {
	conn     net.Conn
	sent     atomic.Int64
	received atomic.Int64
	stop     chan struct{}
	wdone    chan error
	rdone    chan error
}

func pattern(off int64) byte { return byte(off % 251) }

func startStream(t *testing.T, ml *mobLab) *stream {
	t.Helper()
	ln, err := ml.hub.ListenTCP(netip.AddrPortFrom(mobHubTun, 5001).String())
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	s := &stream{stop: make(chan struct{}), wdone: make(chan error, 1), rdone: make(chan error, 1)}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			s.rdone <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 32<<10)
		var off int64
		for {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, err := c.Read(buf)
			for i := range n {
				if buf[i] != pattern(off) {
					s.rdone <- fmt.Errorf("byte %d is %d, want %d", off, buf[i], pattern(off))
					return
				}
				off++
			}
			s.received.Store(off)
			if err == io.EOF {
				s.rdone <- nil
				return
			}
			if err != nil {
				s.rdone <- err
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.conn, err = ml.site.DialTCP(ctx, netip.AddrPortFrom(mobHubTun, 5001).String())
	must(t, err)
	t.Cleanup(func() { s.conn.Close() })
	go func() {
		// About 2 MB/s in 8 KiB writes: a steady stream, bounded in time.
		buf := make([]byte, 8<<10)
		var off int64
		deadline := time.Now().Add(3 * time.Minute)
		for time.Now().Before(deadline) {
			select {
			case <-s.stop:
				s.wdone <- nil
				return
			default:
			}
			for i := range buf {
				buf[i] = pattern(off + int64(i))
			}
			_ = s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			n, err := s.conn.Write(buf)
			off += int64(n)
			s.sent.Store(off)
			if err != nil {
				s.wdone <- fmt.Errorf("write after %d bytes: %w", off, err)
				return
			}
			time.Sleep(4 * time.Millisecond)
		}
		s.wdone <- nil
	}()
	return s
}

// finish stops writing, closes the sending side and checks that every byte
// arrived intact and the connection was never reset.
func (s *stream) finish(t *testing.T) {
	t.Helper()
	close(s.stop)
	if err := <-s.wdone; err != nil {
		t.Errorf("inner TCP stream: %v", err)
	}
	if tc, ok := s.conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	select {
	case err := <-s.rdone:
		if err != nil {
			t.Errorf("inner TCP stream, receiver: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("inner TCP stream: receiver not done 30 s after the sender stopped")
	}
	if s.received.Load() != s.sent.Load() || s.sent.Load() == 0 {
		t.Errorf("inner TCP stream: sent %d bytes, received %d", s.sent.Load(), s.received.Load())
	}
}

// TestMobilitySwitch: under a TCP stream and a 50 Hz ping, the Wi-Fi
// uplink loses its address, comes back, loses its carrier and comes back.
// The connection moves to the cellular standby and back each time without
// a new handshake, and the TCP stream survives.
func TestMobilitySwitch(t *testing.T) {
	t.Parallel()
	ml := startMobLab(t)
	since := ml.siteD.Peer(t, "hub").ConnectedSince
	st := startStream(t, ml)
	ping := startPinger(t, ml.site, mobHubTun)
	time.Sleep(time.Second)

	steps := []struct {
		name string
		act  func()
		to   string
	}{
		{"wifi address removed", func() { ml.wifiDown(t, mobAddrDel) }, "cell0"},
		{"wifi back", func() { ml.wifiUp(t) }, "wifi0"},
		{"wifi carrier lost", func() { ml.wifiDown(t, mobLinkDown) }, "cell0"},
		{"wifi back again", func() { ml.wifiUp(t) }, "wifi0"},
	}
	for i, s := range steps {
		before := ping.sent.Load() - ping.received.Load()
		start := time.Now()
		s.act()
		ml.waitMigrated(t, uint64(i+1), s.to)
		took := time.Since(start)
		time.Sleep(time.Second) // traffic flows on the new path
		p := ml.siteD.Peer(t, "hub")
		lost := ping.sent.Load() - ping.received.Load() - before
		t.Logf("%s: on %s within %v; reported outage %v; pings lost %d (about %v at 50 Hz)",
			s.name, s.to, took.Round(time.Millisecond), p.LastMigrationOutage, lost, time.Duration(lost)*20*time.Millisecond)
		if p.LastMigrationOutage <= 0 {
			t.Errorf("%s: show reports outage %v, want a measured one", s.name, p.LastMigrationOutage)
		}
		ml.siteNotify.next(t, 5*time.Second, "STATUS", "1/1 peers connected; migrated hub to "+s.to)
	}
	sent, lost := ping.end()
	st.finish(t)
	t.Logf("50 Hz ping: %d sent, %d lost over 4 migrations; TCP stream carried %d bytes", sent, lost, st.sent.Load())
	if sent == 0 || lost > sent/4 {
		t.Errorf("ping: %d of %d lost, want far fewer", lost, sent)
	}
	p := ml.siteD.Peer(t, "hub")
	if !p.ConnectedSince.Equal(since) {
		t.Errorf("connected_since changed from %v to %v: the connection was replaced", since, p.ConnectedSince)
	}
	ml.checkOneHandshake(t)
	if got := ml.siteD.LogLines("msg=migrated", "outage="); len(got) < len(steps) {
		t.Errorf("site logged %d migrations with an outage, want %d", len(got), len(steps))
	}
	ml.logMigrations(t)
}

// daemonSockets counts the sockets the process holds.
func daemonSockets(t *testing.T, d *labtest.Daemon) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", d.Cmd.Process.Pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// TestMobilityFlap: Wi-Fi goes away for 3 s and comes back, the cellular
// standby comes and goes, then ten switches in a row; no new handshake and
// no leaked sockets or goroutines.
func TestMobilityFlap(t *testing.T) {
	t.Parallel()
	ml := startMobLab(t)
	time.Sleep(time.Second)
	sockets := daemonSockets(t, ml.siteD)
	goroutines := scrapeIn(t, ml.site, "127.0.0.1:9586")["go_goroutines"]
	ping := startPinger(t, ml.site, mobHubTun)

	ml.wifiDown(t, mobLinkDown)
	ml.waitMigrated(t, 1, "cell0")
	time.Sleep(3 * time.Second)
	ml.wifiUp(t)
	ml.waitMigrated(t, 2, "wifi0")

	ml.cellDown(t, mobAddrDel)
	ml.waitPaths(t, 10*time.Second, "cell0 standby gone", func(p *ctl.PeerStatus) bool { return !p.ValidatedStandby("cell0") })
	time.Sleep(500 * time.Millisecond)
	ml.cellUp(t)
	ml.waitPaths(t, 10*time.Second, "cell0 standby back", func(p *ctl.PeerStatus) bool { return p.ValidatedStandby("cell0") })
	if p := ml.siteD.Peer(t, "hub"); p.Migrations != 2 || p.ActiveUplink() != "wifi0" {
		t.Errorf("after the cellular flap: %d migrations on %s, want 2 on wifi0 (the standby does not move the connection)", p.Migrations, p.ActiveUplink())
	}

	start := time.Now()
	n := uint64(2)
	for i := range 5 {
		how := mobLinkDown
		if i%2 == 1 {
			how = mobAddrDel
		}
		ml.wifiDown(t, how)
		n++
		ml.waitMigrated(t, n, "cell0")
		ml.wifiUp(t)
		n++
		ml.waitMigrated(t, n, "wifi0")
		// Without a validated standby the next loss redials (a new
		// handshake): wait until cell0 is a standby again.
		ml.waitPaths(t, 10*time.Second, "cell0 standby again", func(p *ctl.PeerStatus) bool { return p.ValidatedStandby("cell0") })
	}
	t.Logf("10 switches in a row took %v", time.Since(start).Round(time.Millisecond))
	// Let the standby come back and the old paths close.
	ml.waitPaths(t, 10*time.Second, "cell0 standby", func(p *ctl.PeerStatus) bool { return p.ValidatedStandby("cell0") })
	time.Sleep(2 * time.Second)
	sent, lost := ping.end()
	t.Logf("50 Hz ping: %d sent, %d lost over %d migrations", sent, lost, n)
	must(t, ml.site.WaitPing(mobHubTun, 5*time.Second))

	if got := daemonSockets(t, ml.siteD); got != sockets {
		t.Errorf("site holds %d sockets after the switches, %d before", got, sockets)
	}
	after := scrapeIn(t, ml.site, "127.0.0.1:9586")["go_goroutines"]
	t.Logf("site goroutines: %v before, %v after", goroutines, after)
	if after > goroutines+5 {
		t.Errorf("site runs %v goroutines after the switches, %v before", after, goroutines)
	}
	ml.checkOneHandshake(t)
	ml.logMigrations(t)
}

// TestMobilityNATRebinding: the router's NAT changes the site's public
// port, then its public address. The hub follows without a new handshake,
// also when the site only receives (its heartbeats tell the hub).
func TestMobilityNATRebinding(t *testing.T) {
	t.Parallel()
	ml := startMobLab(t)
	hubSees := func() netip.AddrPort {
		if a := ml.hubD.Peer(t, "site").ActivePath(); a != nil {
			return a.Remote
		}
		return netip.AddrPort{}
	}
	first := hubSees()
	wifiPub, _ := ml.publicAddrs()
	if first.Addr() != wifiPub {
		t.Fatalf("hub sees the site at %v, want address %v", first, wifiPub)
	}
	follow := func(what string, from netip.AddrPort, ok func(netip.AddrPort) bool) netip.AddrPort {
		t.Helper()
		start := time.Now()
		var got netip.AddrPort
		if !labtest.Eventually(15*time.Second, func() bool { got = hubSees(); return ok(got) }) {
			t.Fatalf("%s: hub still sees the site at %v after 15 s", what, got)
		}
		t.Logf("%s: hub follows %v -> %v after %v", what, from, got, time.Since(start).Round(time.Millisecond))
		return got
	}

	ping := startPinger(t, ml.site, mobHubTun)
	time.Sleep(500 * time.Millisecond)
	ml.rebindPort(t)
	cur := follow("port rebinding under traffic", first, func(a netip.AddrPort) bool { return a.Addr() == first.Addr() && a.Port() != first.Port() })
	ml.rebindAddress(t)
	wifiPub, _ = ml.publicAddrs()
	cur = follow("address rebinding under traffic", cur, func(a netip.AddrPort) bool { return a.Addr() == wifiPub })
	time.Sleep(500 * time.Millisecond)
	sent, lost := ping.end()
	t.Logf("50 Hz ping: %d sent, %d lost over two rebindings", sent, lost)
	if sent == 0 || lost > sent/4 {
		t.Errorf("ping: %d of %d lost, want far fewer", lost, sent)
	}

	// No inner traffic at all: only the site's heartbeats and keepalives
	// can tell the hub where the site went.
	time.Sleep(time.Second)
	ml.rebindPort(t)
	follow("port rebinding while idle", cur, func(a netip.AddrPort) bool { return a.Addr() == cur.Addr() && a.Port() != cur.Port() })
	if err := ml.hub.WaitPing(mobSiteTun, 5*time.Second); err != nil {
		t.Errorf("hub to site after an idle rebinding: %v", err)
	}
	if p := ml.siteD.Peer(t, "hub"); p.Migrations != 0 {
		t.Errorf("site made %d migrations for a NAT rebinding, want 0 (the hub follows)", p.Migrations)
	}
	ml.checkOneHandshake(t)
}

// TestMobilityBlackhole: the router drops everything for longer than the
// idle timeout (30 s). The site notices the silent path within seconds;
// once the router forwards again, the tunnel is back within seconds,
// without a daemon restart.
func TestMobilityBlackhole(t *testing.T) {
	t.Parallel()
	ml := startMobLab(t)
	const cut = 33 * time.Second
	start := time.Now()
	ml.blackhole(t, cut)
	ml.siteD.WaitLog(t, 10*time.Second, "path suspect")
	t.Logf("site suspected its path after %v", time.Since(start).Round(time.Millisecond))
	if !labtest.Eventually(cut, func() bool { return ml.siteD.Peer(t, "hub").State != ctl.StateConnected }) {
		t.Errorf("site still reports the hub connected during a %v blackhole", cut)
	}
	t.Logf("site dropped the dead connection after %v", time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Until(start.Add(cut)))
	end := time.Now()
	if err := ml.site.WaitPing(mobHubTun, 30*time.Second); err != nil {
		t.Fatalf("tunnel not back within 30 s after the blackhole: %v", err)
	}
	back := time.Since(end)
	t.Logf("tunnel back %v after the blackhole ended", back.Round(time.Millisecond))
	if back > 20*time.Second {
		t.Errorf("tunnel back only after %v, want within seconds", back)
	}
	for _, d := range []*labtest.Daemon{ml.hubD, ml.siteD} {
		if code, err := d.Wait(0); err == nil {
			t.Errorf("%s exited with %d", d.Name, code)
		}
	}
	if p := ml.siteD.Peer(t, "hub"); p.State != ctl.StateConnected {
		t.Errorf("site: hub is %s after recovery, want connected", p.State)
	}
	t.Logf("during the blackhole the site logged %d path suspicions, %d switches, %d failed dials, %d connections",
		len(ml.siteD.LogLines("path suspect")), len(ml.siteD.LogLines("quicconn: switched path")),
		len(ml.siteD.LogLines("dial failed")), len(ml.siteD.LogLines("peer connected")))
}

// TestMobilityRedialNoStandby: with the cellular uplink down there is no
// standby; Wi-Fi goes away and cellular comes up right after, as two
// separate changes. The site redials at once with 0-RTT on cell0 instead
// of probing cell0 first and switching (bug: an outage of about 1 s and
// no redial), and when Wi-Fi is back the connection moves to it.
func TestMobilityRedialNoStandby(t *testing.T) {
	t.Parallel()
	ml := startMobLab(t)
	ml.cellDown(t, mobLinkDown)
	ml.waitPaths(t, 10*time.Second, "wifi0 active without a cell0 standby", func(p *ctl.PeerStatus) bool {
		return p.ActiveUplink() == "wifi0" && !p.ValidatedStandby("cell0")
	})
	ping := startPinger(t, ml.site, mobHubTun)
	time.Sleep(500 * time.Millisecond)

	ml.wifiDown(t, mobLinkDown)
	ml.siteD.WaitLog(t, 5*time.Second, "no uplink to move to; waiting")
	ml.cellUp(t)
	ml.siteD.WaitLog(t, 10*time.Second, "redialing: no validated standby", "via=cell0")
	ml.siteD.WaitLog(t, 10*time.Second, "quicconn: redialed")
	p := ml.waitPaths(t, 10*time.Second, "a connection on cell0", func(p *ctl.PeerStatus) bool {
		return p.State == ctl.StateConnected && p.ActiveUplink() == "cell0"
	})
	if p.Migrations != 0 {
		t.Errorf("migrations = %d on the redialed connection, want 0 (a redial, not a switch)", p.Migrations)
	}
	for _, l := range ml.siteD.LogLines("quicconn: redialed") {
		t.Logf("site: %s", l)
	}
	if n := len(ml.siteD.LogLines("waiting for a standby probe")); n != 0 {
		t.Errorf("site waited for a standby probe %d times, want a redial at once", n)
	}

	ml.wifiUp(t)
	ml.waitPaths(t, 15*time.Second, "back on wifi0", func(p *ctl.PeerStatus) bool {
		return p.State == ctl.StateConnected && p.ActiveUplink() == "wifi0"
	})
	sent, lost := ping.end()
	t.Logf("50 Hz ping: %d sent, %d lost", sent, lost)
	must(t, ml.site.WaitPing(mobHubTun, 5*time.Second))
}

// TestMobilityStartWithoutUplink: the site starts while neither uplink
// is usable. It must not dial on its wildcard socket (such a connection
// belongs to no uplink and never moves); once Wi-Fi comes up it dials on
// wifi0 at once, keeps cell0 as its standby once that is back, and moves
// to it when Wi-Fi goes.
func TestMobilityStartWithoutUplink(t *testing.T) {
	t.Parallel()
	tp := newMobilityTopo(t, mobOpts{})
	hub, site := mobConfs(t, tp)
	ml := &mobLab{mobTopo: tp}
	ml.hubD = startNode(t, tp.lab, tp.hub, hub)
	tp.wifiDown(t, mobLinkDown)
	tp.cellDown(t, mobLinkDown)
	ml.siteD = startNode(t, tp.lab, tp.site, site)
	ml.siteD.WaitLog(t, 10*time.Second, "quicconn: no usable uplink; waiting for one")
	time.Sleep(500 * time.Millisecond)
	if p := ml.siteD.Peer(t, "hub"); p.State == ctl.StateConnected {
		t.Fatalf("site connected on %q without a usable uplink", p.ActiveUplink())
	}

	tp.wifiUp(t)
	ml.siteD.WaitConnected(t, "hub")
	ml.waitPaths(t, 10*time.Second, "a connection on wifi0", func(p *ctl.PeerStatus) bool { return p.ActiveUplink() == "wifi0" })
	tp.cellUp(t)
	ml.waitPaths(t, 10*time.Second, "cell0 validated as standby", func(p *ctl.PeerStatus) bool {
		return p.ActiveUplink() == "wifi0" && p.ValidatedStandby("cell0")
	})
	tp.wifiDown(t, mobAddrDel)
	ml.waitMigrated(t, 1, "cell0")
	must(t, ml.site.WaitPing(mobHubTun, 5*time.Second))
	if n := len(ml.siteD.LogLines("dialing on the wildcard socket")); n != 0 {
		t.Errorf("site dialed on the wildcard socket %d times", n)
	}
}
