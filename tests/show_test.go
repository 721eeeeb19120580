// SPDX-License-Identifier: MIT

package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// show runs `godwit show --socket <d's socket> args...` and returns its
// stdout.
func show(t *testing.T, d *labtest.Daemon, args ...string) string {
	t.Helper()
	cmd := exec.Command(labtest.Godwit(t), append([]string{"show", "--socket", d.Socket}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("godwit show %s (%s): %v: %s", strings.Join(args, " "), d.Name, err, stderr.String())
	}
	return string(out)
}

// opsLab is a hub and one site, both up; the hub has the extra
// [interface] lines hubExtra.
func opsLab(t *testing.T, hubExtra ...string) (tp *topo, hub, site *labtest.Daemon) {
	t.Helper()
	tp = newTopo(t, 1, false)
	s := tp.sites[0]
	hc := tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port))
	hc.extra = hubExtra
	hub = tp.start(t, tp.hub, hc)
	site = tp.start(t, s.ns, tp.siteConf(s, false))
	site.WaitConnected(t, "hub")
	hub.WaitConnected(t, s.name())
	return tp, hub, site
}

// pingCount is how many echo requests the show and metrics tests send
// through the tunnel.
const pingCount = 20

// pingThrough sends pingCount pings from the site to the hub's tunnel
// address and requires most of them answered; it returns the replies.
func pingThrough(t *testing.T, tp *topo) int {
	t.Helper()
	hub4, _ := tunAddrs(0)
	r, err := tp.sites[0].ns.Ping(hub4, pingCount, 10*time.Millisecond, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != pingCount || r.Received < pingCount-2 {
		t.Fatalf("ping through the tunnel: %d sent, %d received, want %d and nearly all back", r.Sent, r.Received, pingCount)
	}
	return r.Received
}

// TestShow checks `godwit show` on a hub and a site after a known number
// of pings: the packet counters (at least the pings, and not many more),
// the state, RTT, endpoints and keys in the JSON document, and the human
// output.
func TestShow(t *testing.T) {
	tp, hub, site := opsLab(t)
	s := tp.sites[0]
	hubBefore, siteBefore := hub.Status(t), site.Status(t)
	replies := pingThrough(t, tp)
	hubAfter, siteAfter := hub.Status(t), site.Status(t)

	// Counters grow by the pings, plus little: nothing else talks over
	// the tunnel in this lab (heartbeats ride the control stream, and
	// link-local multicast has no route).
	const slack = 5
	delta := func(after, before uint64) uint64 { return after - before }
	sp, sp0 := labtest.PeerOf(t, siteAfter, "hub"), labtest.PeerOf(t, siteBefore, "hub")
	hp, hp0 := labtest.PeerOf(t, hubAfter, s.name()), labtest.PeerOf(t, hubBefore, s.name())
	counters := []struct {
		name     string
		got      uint64
		min, max uint64
	}{
		{"site tx packets to hub", delta(sp.TxPackets, sp0.TxPackets), pingCount, pingCount + slack},
		{"site rx packets from hub", delta(sp.RxPackets, sp0.RxPackets), uint64(replies), pingCount + slack},
		{"hub rx packets from site", delta(hp.RxPackets, hp0.RxPackets), pingCount, pingCount + slack},
		{"hub tx packets to site", delta(hp.TxPackets, hp0.TxPackets), uint64(replies), pingCount + slack},
		// At least an IPv4 and an ICMP header per echo, at most an MTU.
		{"site tx bytes", delta(sp.TxBytes, sp0.TxBytes), 28 * pingCount, 1300 * (pingCount + slack)},
		{"hub rx bytes", delta(hp.RxBytes, hp0.RxBytes), 28 * pingCount, 1300 * (pingCount + slack)},
		{"hub interface rx packets", delta(hubAfter.Interface.RxPackets, hubBefore.Interface.RxPackets), pingCount, pingCount + slack},
	}
	for _, c := range counters {
		if c.got < c.min || c.got > c.max {
			t.Errorf("%s grew by %d over %d pings, want %d..%d", c.name, c.got, pingCount, c.min, c.max)
		}
	}

	hub4, _ := underlay(s.i, 1)
	site4, _ := underlay(s.i, 2)
	for _, tt := range []struct {
		who        string
		st         *ctl.Status
		p          *ctl.PeerStatus
		wantKey    string
		wantRemote netip.Addr
		wantPort   uint16 // 0: any (the site's port is ephemeral)
		wantEP     string
	}{
		{"site", siteAfter, sp, tp.hubK.pub, hub4, port, netip.AddrPortFrom(hub4, port).String()},
		{"hub", hubAfter, hp, s.k.pub, site4, 0, ""},
	} {
		p := tt.p
		if p.State != ctl.StateConnected {
			t.Errorf("%s: peer %s state %q, want connected", tt.who, p.Name, p.State)
		}
		if p.PublicKey != tt.wantKey {
			t.Errorf("%s: peer %s key %q, want %q", tt.who, p.Name, p.PublicKey, tt.wantKey)
		}
		if p.Endpoint != tt.wantEP {
			t.Errorf("%s: peer %s configured endpoint %q, want %q", tt.who, p.Name, p.Endpoint, tt.wantEP)
		}
		if tt.st.Interface.Name != tunName {
			t.Errorf("%s: interface %q, want %q", tt.who, tt.st.Interface.Name, tunName)
		}
		now := tt.st.Now
		if p.LastHandshake.IsZero() || p.LastHandshake.After(now) || now.Sub(p.LastHandshake) > time.Minute {
			t.Errorf("%s: last handshake %v, want within the last minute of %v", tt.who, p.LastHandshake, now)
		}
		for name, ts := range map[string]time.Time{"last rx": p.LastRx, "last tx": p.LastTx} {
			if age := now.Sub(ts); ts.IsZero() || age < -time.Second || age > 10*time.Second {
				t.Errorf("%s: %s %v, want within seconds of %v (the pings)", tt.who, name, ts, now)
			}
		}
		if n := len(p.Paths); n != 1 {
			t.Errorf("%s: %d paths, want 1", tt.who, n)
			continue
		}
		pa := p.Paths[0]
		if !pa.Active || pa.Remote.Addr() != tt.wantRemote || (tt.wantPort != 0 && pa.Remote.Port() != tt.wantPort) {
			t.Errorf("%s: path remote %v active %v, want %v (port %d) active", tt.who, pa.Remote, pa.Active, tt.wantRemote, tt.wantPort)
		}
		if pa.RTT.Smoothed <= 0 || pa.RTT.Min <= 0 || pa.RTT.Latest <= 0 || pa.RTT.Smoothed > 5*time.Second {
			t.Errorf("%s: rtt %+v, want all > 0 and sane", tt.who, pa.RTT)
		}
		if pa.CongestionWindow == 0 || pa.DatagramLimit < 1000 || pa.DatagramLimit > 65535 {
			t.Errorf("%s: congestion window %d, datagram limit %d; want > 0 and a real limit", tt.who, pa.CongestionWindow, pa.DatagramLimit)
		}
		if pa.PacketsSent < pingCount || pa.PacketsReceived < uint64(replies) {
			t.Errorf("%s: QUIC packets sent %d, received %d; want at least the pings", tt.who, pa.PacketsSent, pa.PacketsReceived)
		}
		if got := p.Drops["inbound/bad_source"]; got != 0 {
			t.Errorf("%s: %d bad-source drops, want 0", tt.who, got)
		}
	}

	human := show(t, site)
	for _, want := range []string{
		"interface: " + tunName,
		"peer: hub",
		"  public key: " + tp.hubK.pub,
		"  state: connected for ",
		"  endpoint: " + netip.AddrPortFrom(hub4, port).String(),
		"  latest handshake: ",
		"    rtt: ",
	} {
		if !strings.Contains(human, want) {
			t.Errorf("godwit show (site): no %q in\n%s", want, human)
		}
	}
	if human := show(t, hub); !strings.Contains(human, "peer: "+s.name()) || !strings.Contains(human, "listening on: 0.0.0.0:4433") {
		t.Errorf("godwit show (hub) does not mention peer %s and the listen address:\n%s", s.name(), human)
	}

	// `godwit show --json` prints the document the control socket serves.
	js := show(t, site, "--json")
	var doc ctl.Status
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		t.Fatalf("godwit show --json: %v in %q", err, js)
	}
	if p := doc.Peer("hub"); doc.Interface.PublicKey != siteAfter.Interface.PublicKey || p == nil ||
		p.PublicKey != tp.hubK.pub || p.State != ctl.StateConnected || len(p.Paths) != 1 {
		t.Errorf("godwit show --json (site) = %s\nwant the site's status with the hub connected on one path", js)
	}

	// No daemon on a socket: a clear error and a failing exit status.
	cmd := exec.Command(labtest.Godwit(t), "show", "--socket", filepath.Join(tp.lab.Dir, "none.sock"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is it running?") {
		t.Errorf("godwit show without a daemon: %v, %q; want an error saying so", err, out)
	}

	// A stopped daemon leaves no socket (nor its lock file) behind.
	site.Stop(t, 10*time.Second)
	for _, p := range []string{site.Socket, site.Socket + ".lock"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after SIGTERM: stat %s = %v, want not exist", p, err)
		}
	}
}

// TestShowEveryDaemonPerNamespace: daemons started without a socket
// override put their control sockets in a directory of their network
// namespace, so two with the same interface name in two namespaces do not
// share one; `godwit show` in a namespace shows every daemon of that
// namespace (as `wg show` does), and only those.
func TestShowEveryDaemonPerNamespace(t *testing.T) {
	tp := newTopo(t, 1, false)
	bin := labtest.Godwit(t)
	s := tp.sites[0]
	start := func(ns *netlab.NS, name, iface string, c nodeConf) {
		t.Helper()
		path := c.write(t, tp.lab)
		b, err := os.ReadFile(path)
		must(t, err)
		b = []byte(strings.Replace(string(b), fmt.Sprintf("name = %q", tunName), fmt.Sprintf("name = %q", iface), 1))
		must(t, os.WriteFile(path, b, 0o644))
		p, err := ns.Start(name, "env", "-u", ctl.SocketEnv, bin, "run", "-c", path)
		must(t, err)
		if err := p.WaitLog(t.Context(), 10*time.Second, "godwit running"); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, p.Output())
		}
	}
	hubConf := tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port))
	start(tp.hub, "hub-gw0", "gw0", hubConf)
	hubConf.name = "hub2"
	hubConf.listen = fmt.Sprintf("0.0.0.0:%d", port+1)
	start(tp.hub, "hub-gw1", "gw1", hubConf)
	siteConf := tp.siteConf(s, false)
	start(s.ns, "site-gw0", "gw0", siteConf)

	showIn := func(ns *netlab.NS) []ctl.Status {
		t.Helper()
		out, err := ns.Exec("env", "-u", ctl.SocketEnv, bin, "show", "--json")
		if err != nil {
			t.Fatalf("godwit show in %s: %v", ns.Name, err)
		}
		var sts []ctl.Status
		if err := json.Unmarshal([]byte(out), &sts); err != nil {
			var st ctl.Status
			if err2 := json.Unmarshal([]byte(out), &st); err2 != nil {
				t.Fatalf("godwit show --json in %s: %v\n%s", ns.Name, err, out)
			}
			sts = []ctl.Status{st}
		}
		return sts
	}
	hubs := showIn(tp.hub)
	if len(hubs) != 2 || hubs[0].Interface.Name != "gw0" || hubs[1].Interface.Name != "gw1" {
		t.Errorf("godwit show in the hub's namespace: %d daemons, want gw0 and gw1", len(hubs))
	}
	sites := showIn(s.ns)
	if len(sites) != 1 || sites[0].Interface.Name != "gw0" || sites[0].Peer("hub") == nil {
		t.Errorf("godwit show in the site's namespace: %+v, want the site's gw0 only", sites)
	}
	text, err := tp.hub.Exec("env", "-u", ctl.SocketEnv, bin, "show")
	must(t, err)
	if strings.Count(text, "interface: ") != 2 {
		t.Errorf("godwit show (text) in the hub's namespace shows %d interfaces, want 2:\n%s", strings.Count(text, "interface: "), text)
	}
}
