// SPDX-License-Identifier: MIT

package tests

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// The 0-RTT tests use the mobility lab with its relay (50 ms each way, so
// a round trip through the tunnel's underlay costs 100 ms): a site and a
// hub, tunnel addresses 198.19.0.2 and 198.19.0.1.
var (
	zrHubTun  = netip.MustParseAddr("198.19.0.1")
	zrSiteTun = netip.MustParseAddr("198.19.0.2")
	zrEcho    = netip.AddrPortFrom(zrHubTun, 7777)
)

// zrLab is the mobility lab with a hub running and configs for the site.
type zrLab struct {
	*mobTopo
	hubK, siteK key
	hub         *labtest.Daemon
	stateDir    string // the site's state directory
}

func newZRLab(t *testing.T) *zrLab {
	t.Helper()
	tp := newMobilityTopo(t, mobOpts{delay: 50 * time.Millisecond})
	z := &zrLab{mobTopo: tp, hubK: genKey(t, tp.lab, "hub"), siteK: genKey(t, tp.lab, "site")}
	z.stateDir = filepath.Join(tp.lab.Dir, "site-state")
	hc := nodeConf{name: "hub", key: z.hubK, listen: mobHub.String(), addrs: []string{"198.19.0.1/24"},
		peers: []peerConf{{name: "site", pub: z.siteK.pub, allowed: []string{"198.19.0.2/32"}}}}
	z.hub = labtest.StartDaemon(t, tp.hub, "hub", hc.write(t, tp.lab))
	z.hub.WaitLog(t, labtest.ConnectWithin, "quicconn: listening")
	return z
}

// siteConfig writes the site's config; it dials the hub at ep.
func (z *zrLab) siteConfig(t *testing.T, ep netip.AddrPort) string {
	t.Helper()
	c := nodeConf{name: "site", key: z.siteK, addrs: []string{"198.19.0.2/24"},
		peers: []peerConf{{name: "hub", pub: z.hubK.pub, allowed: []string{"198.19.0.1/32"}, endpoint: ep.String()}}}
	return c.write(t, z.lab)
}

// ticketPath is where the site keeps its session ticket for the hub.
func (z *zrLab) ticketPath(t *testing.T) string {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(z.hubK.pub)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(z.stateDir, "tickets", base64.RawURLEncoding.EncodeToString(k))
}

// prime runs the site once, dialing ep, until it holds a session ticket
// for the hub on disk, and stops it with SIGTERM.
func (z *zrLab) prime(t *testing.T, ep netip.AddrPort) {
	t.Helper()
	d := labtest.StartDaemon(t, z.site, "site-prime", z.siteConfig(t, ep))
	d.WaitConnected(t, "hub")
	labtest.WaitFor(t, 5*time.Second, "session ticket in the site's state dir", func() bool {
		_, err := os.Stat(z.ticketPath(t))
		return err == nil
	})
	d.Stop(t, 10*time.Second)
	z.hub.WaitLog(t, 5*time.Second, "peer disconnected", "peer=site")
}

// prober sends a numbered UDP datagram from the site to dst every 10 ms
// and records when each distinct answer or arrival happens.
type prober struct {
	conn *net.UDPConn
	mu   sync.Mutex // guards first
	// first is when the first echo arrived; zero until then.
	first time.Time
	done  chan struct{}
}

// startProber starts sending at once, for at most d; it stops when an
// echo arrived (if stopOnEcho) or when the test ends.
func startProber(t *testing.T, ns *netlab.NS, dst netip.AddrPort, d time.Duration, stopOnEcho bool) *prober {
	t.Helper()
	c, err := ns.ListenUDP("0.0.0.0:0")
	must(t, err)
	p := &prober{conn: c, done: make(chan struct{})}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // sender
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		end := time.After(d)
		for seq := 1; ; seq++ {
			_, _ = c.WriteToUDPAddrPort(fmt.Appendf(nil, "z%d", seq), dst) // no route yet: loss
			select {
			case <-stop:
				return
			case <-end:
				return
			case <-tick.C:
			}
		}
	}()
	go func() { // reader
		defer wg.Done()
		defer close(p.done)
		buf := make([]byte, 1500)
		_ = c.SetReadDeadline(time.Now().Add(d + time.Second))
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if !strings.HasPrefix(string(buf[:n]), "z") {
				continue
			}
			p.mu.Lock()
			if p.first.IsZero() {
				p.first = time.Now()
			}
			p.mu.Unlock()
			if stopOnEcho {
				return
			}
		}
	}()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() { close(stop) })
		c.Close()
		wg.Wait()
	})
	go func() {
		<-p.done
		once.Do(func() { close(stop) })
	}()
	return p
}

// firstEcho waits until the prober got an echo or gave up, and returns
// when the echo came (zero if none).
func (p *prober) firstEcho() time.Time {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first
}

// TestSiteRestartZeroRTT restarts a site twice through a relay that adds
// 50 ms each way: once with its state dir (it resumes with 0-RTT, and the
// first IP packets go out in its first flight) and once with the state dir
// emptied (a full handshake, then the hello exchange). It measures the
// time from process start to the first answer through the tunnel.
func TestSiteRestartZeroRTT(t *testing.T) {
	z := newZRLab(t)
	startMobEcho(t, z.mobTopo.hub, netip.AddrPortFrom(netip.IPv4Unspecified(), zrEcho.Port()))
	cfg := z.siteConfig(t, z.dialAddr())
	z.prime(t, z.dialAddr())

	run := func(name string) (time.Duration, *labtest.Daemon) {
		t.Helper()
		p := startProber(t, z.site, zrEcho, 5*time.Second, true)
		start := time.Now()
		d := labtest.StartDaemon(t, z.site, name, cfg)
		first := p.firstEcho()
		if first.IsZero() {
			t.Fatalf("%s: no answer through the tunnel within 5 s of the start", name)
		}
		return first.Sub(start), d
	}

	zeroRTT, d := run("site-0rtt")
	d.WaitLog(t, 5*time.Second, "quicconn: connection up", "dialer=true", "zero_rtt=accepted")
	// The latest handshake stays visible after a 0-RTT reconnect, on both
	// ends (an alert on its age, copied from WireGuard, must not misfire).
	for _, side := range []struct {
		d    *labtest.Daemon
		peer string
	}{{d, "hub"}, {z.hub, "site"}} {
		if !labtest.Eventually(5*time.Second, func() bool { return !side.d.Peer(t, side.peer).LastHandshake.IsZero() }) {
			t.Errorf("%s: peer %s has no latest handshake after the 0-RTT reconnect", side.d.Name, side.peer)
		}
	}
	d.Stop(t, 10*time.Second)
	z.hub.WaitLog(t, 5*time.Second, "peer disconnected", "peer=site")

	must(t, os.RemoveAll(z.stateDir))
	full, d := run("site-full")
	d.WaitLog(t, 5*time.Second, "quicconn: connection up", "dialer=true", "resumed=false")
	if n := len(d.LogLines("zero_rtt=")); n != 0 {
		t.Errorf("with the state dir emptied the site logged %d lines about 0-RTT, want a full handshake", n)
	}

	t.Logf("process start to first answer through the tunnel (RTT 100 ms): 0-RTT %v, full handshake %v",
		zeroRTT.Round(time.Millisecond), full.Round(time.Millisecond))
	for name, got := range map[string]time.Duration{"0-RTT": zeroRTT, "full handshake": full} {
		if got > 2*time.Second {
			t.Errorf("%s: first answer after %v, want under 2 s", name, got)
		}
	}
}

// TestZeroRTTReplayThroughRelay replays the restarted site's first flight
// (which carries IP packets in 0-RTT) from another address, several
// times: every inner datagram reaches the listener behind the hub exactly
// once, and the hub refuses the replayed 0-RTT data.
func TestZeroRTTReplayThroughRelay(t *testing.T) {
	z := newZRLab(t)
	ln, err := z.hub.NS.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), zrEcho.Port()).String())
	must(t, err)
	var (
		mu  sync.Mutex // guards got
		got = map[string]int{}
	)
	labtest.ServeUDP(t, ln, func(b []byte, from netip.AddrPort) []byte {
		if from.Addr().Unmap() == zrSiteTun {
			mu.Lock()
			got[string(b)]++
			mu.Unlock()
		}
		return nil // count only, never answer
	})

	// Prime directly, so the relay records only the restarted site's
	// traffic: its first datagrams are the 0-RTT first flight.
	z.prime(t, mobHub)
	startProber(t, z.site, zrEcho, 600*time.Millisecond, false)
	d := labtest.StartDaemon(t, z.site, "site-0rtt", z.siteConfig(t, z.dialAddr()))
	d.WaitLog(t, 5*time.Second, "quicconn: connection up", "dialer=true", "zero_rtt=accepted")

	// A replay reaches a new connection on the hub once quic-go retired
	// the client's first connection ID (3 PTOs after the handshake, about
	// a second here); before that, the live connection drops the copies.
	refused := false
	for i := 0; i < 8 && !refused; i++ {
		z.relay.Replay(4, 2, 500*time.Millisecond)
		refused = labtest.Eventually(time.Second, func() bool {
			return len(z.hub.LogLines("quicconn: refused 0-RTT data", "already used")) > 0
		})
	}
	if !refused {
		t.Errorf("the hub never refused the replayed 0-RTT data (relay %+v)", z.relay.Stats())
	}
	time.Sleep(time.Second) // time for any (wrong) second delivery

	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 {
		t.Fatal("no inner datagram reached the hub")
	}
	for payload, n := range got {
		if n != 1 {
			t.Errorf("inner datagram %q arrived %d times, want once", payload, n)
		}
	}
	if n := len(z.hub.LogLines("peer connected", "peer=site")); n != 2 {
		t.Errorf("hub logged %d site connections, want 2 (priming and restart), none for the replays", n)
	}
	t.Logf("%d distinct inner datagrams arrived once each; relay %+v", len(got), z.relay.Stats())
}
