// SPDX-License-Identifier: MIT

package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// The proxy lab adds a namespace with Debian's tinyproxy to the fallback
// lab, hung off the router, and lets the site reach nothing but the proxy:
//
//	proxy (fbpx) px0 192.0.2.2/24 ─── p0r 192.0.2.1/24 (router)
//
// The router drops all UDP, and every packet from the site's link that is
// not for the proxy, so the only way to the hub is CONNECT through
// tinyproxy (Basic auth), which reaches 203.0.113.2:443 through the router.
var fbProxy = netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), 3128)

const fbProxyRules = `add rule inet tcpfb gate meta l4proto udp counter drop
add rule inet tcpfb gate iifname "s0r" ip daddr != 192.0.2.2 counter drop
`

// startProxy makes the proxy namespace, starts tinyproxy in it and waits
// until it accepts connections.
func (fl *fbLab) startProxy(t *testing.T) {
	t.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		t.Fatalf("the proxy test needs tinyproxy (apt-get install tinyproxy): %v", err)
	}
	px, err := fl.lab.NS("fbpx")
	must(t, err)
	must(t, fl.lab.Link(px, "px0", fl.router, "p0r"))
	must(t, px.Addr("px0", netip.PrefixFrom(fbProxy.Addr(), 24).String()))
	must(t, fl.router.Addr("p0r", "192.0.2.1/24"))
	_, err = px.Exec("ip", "route", "add", "default", "via", "192.0.2.1")
	must(t, err)
	_, err = fl.hub.Exec("ip", "route", "add", "192.0.2.0/24", "via", "203.0.113.1")
	must(t, err)
	conf := filepath.Join(fl.lab.Dir, "tinyproxy.conf")
	must(t, os.WriteFile(conf, []byte(fmt.Sprintf(`Port %d
Listen %s
Timeout 600
MaxClients 16
Allow 198.51.100.0/24
BasicAuth godwit s3cret
ConnectPort %d
LogLevel Info
`, fbProxy.Port(), fbProxy.Addr(), fbTCPPort)), 0o644))
	_, err = px.Start("tinyproxy", bin, "-d", "-c", conf)
	must(t, err)
	labtest.WaitFor(t, 5*time.Second, "tinyproxy listening", func() bool {
		c, err := px.DialTCP(t.Context(), fbProxy.String())
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// TestTCPFallbackThroughProxy: the site's network lets nothing out but an
// HTTP proxy. The site reaches the hub over TCP through tinyproxy with
// CONNECT and Basic auth, and the tunnel carries ping and a TCP stream.
func TestTCPFallbackThroughProxy(t *testing.T) {
	t.Parallel()
	fl := newFallbackLab(t)
	fl.startProxy(t)
	loadNft(t, fl.router, fl.nftFile, fbProxyRules)
	fl.siteConf.peers[0].extra = append(fl.siteConf.peers[0].extra,
		fmt.Sprintf(`tcp_proxy = "http://godwit:s3cret@%s"`, fbProxy))
	fl.startHub(t)
	start := time.Now()
	fl.startSite(t)
	if err := fl.site.WaitPing(fbHubTun, 20*time.Second); err != nil {
		t.Fatalf("no inner ping through the proxy: %v (%s)", err, fbString(fl.siteD.Peer(t, "hub")))
	}
	t.Logf("through the proxy: inner ping answered %v after the site started", time.Since(start).Round(time.Millisecond))
	p := fl.waitFallback(t, 5*time.Second, "TCP path via the proxy carrying", func(p *ctl.PeerStatus) bool {
		return onTCP(p) && len(p.Paths) > 0
	})
	if want := "udp blocked: no answer in 1s; tcp via proxy"; p.Fallback.Reason != want {
		t.Errorf("fallback reason %q, want %q", p.Fallback.Reason, want)
	}
	var viaProxy bool
	for _, pa := range p.Paths {
		viaProxy = viaProxy || pa.Transport == "tcp via proxy"
	}
	if !viaProxy {
		t.Errorf("no path over \"tcp via proxy\": %s", fbString(p))
	}
	// The hub sees the connection come from the proxy.
	hp := fl.hubD.Peer(t, "site")
	var fromProxy bool
	for _, pa := range hp.Paths {
		fromProxy = fromProxy || (pa.Transport == "tcp" && pa.Remote.Addr() == fbProxy.Addr())
	}
	if !fromProxy {
		t.Errorf("the hub has no TCP path from the proxy %s: %s", fbProxy.Addr(), fbString(hp))
	}

	// A TCP stream through the tunnel: 1 MiB echoed back intact.
	ln, err := fl.hub.ListenTCP(netip.AddrPortFrom(fbHubTun, 5001).String())
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := fl.site.DialTCP(ctx, netip.AddrPortFrom(fbHubTun, 5001).String())
	must(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	from := time.Now()
	go func() { _, _ = c.Write(data) }()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("TCP stream through the tunnel over the proxy: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("TCP stream through the tunnel over the proxy: the echo differs from what was sent")
	}
	t.Logf("1 MiB echoed through the tunnel over the proxy in %v", time.Since(from).Round(time.Millisecond))
}
