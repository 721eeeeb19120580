// SPDX-License-Identifier: MIT

package tests

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gwkey "github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/tcppath"
	"github.com/godwit-vpn/godwit/tests/bench/measure"
)

// The flood adds a second site to the fallback lab, behind the same
// router on a link of its own:
//
//	site2 (fbsite2) up0 192.0.2.2/24 ─── s2r 192.0.2.1/24 (router)
//	gw0 198.19.0.3/24
//
// and attacks the hub's listen_tcp from the router's namespace.
var fbSite2Tun = netip.MustParseAddr("198.19.0.3")

const (
	floodMute     = 1000             // connections that never send a byte
	floodUnknown  = 4                // clients with unknown keys, each in a loop
	floodFor      = 10 * time.Second // how long the flood lasts
	floodRedial   = 100 * time.Millisecond
	floodRSSBound = 64 << 10 // KiB the hub's RSS may grow by under the flood
)

// floodStats count what the flood did.
type floodStats struct {
	dials, dialErrors, closedByHub atomic.Int64
	unknown, unknownAccepted       atomic.Int64
}

// muteFlood keeps floodMute TCP connections to addr open from the
// router's namespace until ctx ends: each one the hub closes is dialed
// again after floodRedial. None of them ever sends a byte.
func (fl *fbLab) muteFlood(ctx context.Context, wg *sync.WaitGroup, addr string, st *floodStats) {
	for range floodMute {
		wg.Go(func() {
			for ctx.Err() == nil {
				st.dials.Add(1)
				c, err := fl.router.DialTCP(ctx, addr)
				if err != nil {
					st.dialErrors.Add(1)
				} else {
					stop := context.AfterFunc(ctx, func() { c.Close() })
					if _, err := io.Copy(io.Discard, c); err == nil || ctx.Err() == nil {
						st.closedByHub.Add(1) // EOF or reset from the hub
					}
					stop()
					c.Close()
				}
				select {
				case <-ctx.Done():
				case <-time.After(floodRedial):
				}
			}
		})
	}
}

// unknownFlood runs floodUnknown loops of TLS clients with fresh, unknown
// keys against addr until ctx ends.
func (fl *fbLab) unknownFlood(ctx context.Context, t *testing.T, wg *sync.WaitGroup, addr string, st *floodStats) {
	hubKey, err := gwkey.ParsePublic(fl.hubK.pub)
	must(t, err)
	for range floodUnknown {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, priv, err := ed25519.GenerateKey(rand.Reader)
				if err != nil {
					return
				}
				st.unknown.Add(1)
				_ = fl.router.Do(func() error {
					dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					pc, err := tcppath.Dial(dctx, addr, tcppath.ClientConfig{PrivateKey: priv, PeerKey: hubKey})
					if err == nil {
						// TLS 1.3: the client finishes before the hub checks
						// its key; a refused one fails on its first read.
						pc.SetReadDeadline(time.Now().Add(2 * time.Second))
						if _, _, err := pc.ReadFrom(make([]byte, 2048)); err == nil {
							st.unknownAccepted.Add(1)
						}
						pc.Close()
					}
					return nil
				})
			}
		})
	}
}

// TestTCPListenerFlood (issue 12, target 6): a site runs over its TCP path
// (UDP blocked) with a 50 Hz ping while the hub's listen_tcp is flooded
// for 10 s with 1,000 connections that never finish TLS (each one closed
// is opened again) and with TLS clients of unknown keys. The site loses no
// ping, a second site started during the flood connects over TCP, no
// unknown client gets through, and the hub's RSS stays bounded (reported;
// asserted to grow by less than 64 MiB).
func TestTCPListenerFlood(t *testing.T) {
	fl := newFallbackLab(t)
	site2, err := fl.lab.NS("fbsite2")
	must(t, err)
	must(t, fl.lab.Link(site2, "up0", fl.router, "s2r"))
	must(t, site2.Addr("up0", "192.0.2.2/24"))
	must(t, fl.router.Addr("s2r", "192.0.2.1/24"))
	_, err = site2.Exec("ip", "route", "add", "default", "via", "192.0.2.1")
	must(t, err)
	_, err = fl.hub.Exec("ip", "route", "add", "192.0.2.0/24", "via", "203.0.113.1")
	must(t, err)
	site2K := genKey(t, fl.lab, "fbsite2")
	fl.hubConf.peers = append(fl.hubConf.peers, peerConf{name: "site2", pub: site2K.pub, allowed: prefixes(fbSite2Tun)})
	site2Conf := fl.siteConf
	site2Conf.name, site2Conf.key, site2Conf.addrs = "fbsite2", site2K, []string{"198.19.0.3/24"}

	ping := fl.startOnTCP(t)
	pid := fl.hubD.Cmd.Process.Pid
	rssBefore, err := measure.VmRSS(pid)
	must(t, err)

	addr := netip.AddrPortFrom(fbHub, fbTCPPort).String()
	var (
		st  floodStats
		wg  sync.WaitGroup
		rss atomic.Uint64 // the largest VmRSS seen, KiB
	)
	ctx, cancel := context.WithTimeout(t.Context(), floodFor)
	defer cancel()
	start := time.Now()
	fl.muteFlood(ctx, &wg, addr, &st)
	fl.unknownFlood(ctx, t, &wg, addr, &st)
	wg.Go(func() {
		for ctx.Err() == nil {
			if v, err := measure.VmRSS(pid); err == nil && v > rss.Load() {
				rss.Store(v)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	// Let the flood build up, then start the second site into it.
	time.Sleep(2 * time.Second)
	hubTCP := fl.hubD.Status(t).Interface.TCPListener
	site2Start := time.Now()
	site2D := startNode(t, fl.lab, site2, site2Conf, "GODWIT_DEBUG_REDIAL_MAX=1s")
	site2D.WaitLog(t, 7*time.Second, "peer connected", "peer=hub", "transport=tcp")
	site2Up := time.Since(site2Start)
	if err := site2.WaitPing(fbHubTun, 5*time.Second); err != nil {
		t.Errorf("second site: no ping through the tunnel during the flood: %v", err)
	}
	wg.Wait()
	end := time.Now()
	floodEnd := fl.hubD.Status(t).Interface.TCPListener

	time.Sleep(time.Second) // late replies
	gap, lost, sent := ping.Outage(start, end)
	rssAfter, err := measure.VmRSS(pid)
	must(t, err)
	t.Logf("flood for %v: %d mute dials (%d closed by the hub, %d failed), %d unknown-key clients (%d got through)",
		end.Sub(start).Round(time.Millisecond), st.dials.Load(), st.closedByHub.Load(), st.dialErrors.Load(),
		st.unknown.Load(), st.unknownAccepted.Load())
	if hubTCP != nil {
		t.Logf("hub after 2 s of flood: %+v", hubTCP)
	}
	if floodEnd != nil {
		t.Logf("hub at the end: %+v", floodEnd)
	}
	t.Logf("established site: %d of %d pings lost, longest gap %v; second site connected over TCP %v after its start",
		lost, sent, gap.Round(time.Millisecond), site2Up.Round(time.Millisecond))
	t.Logf("hub RSS: %d KiB before, %d KiB at most during the flood, %d KiB after", rssBefore, rss.Load(), rssAfter)

	if lost != 0 {
		t.Errorf("the established site lost %d of %d pings during the flood, want none", lost, sent)
	}
	if n := st.unknownAccepted.Load(); n != 0 {
		t.Errorf("%d clients with unknown keys got a packet through", n)
	}
	if st.unknown.Load() == 0 || st.closedByHub.Load() < floodMute {
		t.Errorf("the flood did not happen as meant: %d unknown-key clients, %d mute connections closed by the hub",
			st.unknown.Load(), st.closedByHub.Load())
	}
	if floodEnd == nil || floodEnd.RefusedKeys == 0 || floodEnd.Evicted+floodEnd.HandshakeTimeouts == 0 {
		t.Errorf("the hub's TCP listener did not count the flood: %+v", floodEnd)
	}
	if grew := int64(rss.Load()) - int64(rssBefore); grew > floodRSSBound {
		t.Errorf("hub RSS grew by %d KiB under the flood, want < %d KiB", grew, floodRSSBound)
	}
	if p := fl.siteD.Peer(t, "hub"); !onTCP(p) {
		t.Errorf("after the flood the site is not on its TCP path: %s", fbString(p))
	}
}
