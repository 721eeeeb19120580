// SPDX-License-Identifier: MIT

package tests

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// These tests play systemd's part of the notify protocol (sd_notify(3)):
// a unixgram socket in NOTIFY_SOCKET receives what the daemon sends, and
// the tests assert the order and timing of READY, STATUS, WATCHDOG,
// RELOADING and STOPPING. WATCHDOG_USEC is 1 s, so pings are due every
// 0.5 s; WATCHDOG_PID is unset, which means "any pid".

const (
	watchdogInterval = time.Second
	// pingGapMax is the longest gap allowed between two WATCHDOG=1: half
	// the interval, plus slack for a loaded 2-core machine.
	pingGapMax = watchdogInterval/2 + 300*time.Millisecond
)

// notifyMsg is one datagram received on the notify socket.
type notifyMsg struct {
	at     time.Time
	fields map[string]string // "READY" -> "1", ...
	raw    string
}

func (m notifyMsg) String() string {
	return fmt.Sprintf("%s %q", m.at.Format("15:04:05.000"), m.raw)
}

// notifySock is a fake systemd notify socket.
type notifySock struct {
	path string
	conn *net.UnixConn

	mu     sync.Mutex
	msgs   []notifyMsg
	cursor int           // next message next() looks at
	wake   chan struct{} // cap 1, signalled on every message
}

// newNotifySock listens on a fresh socket in the lab's directory and
// closes it when the test ends.
func newNotifySock(t *testing.T, l *netlab.Lab, name string) *notifySock {
	t.Helper()
	path := filepath.Join(l.Dir, name+".notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &notifySock{path: path, conn: c, wake: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			m := notifyMsg{at: time.Now(), fields: make(map[string]string), raw: string(buf[:n])}
			for line := range strings.SplitSeq(m.raw, "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					m.fields[k] = v
				}
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
		if t.Failed() {
			t.Logf("--- notify messages of %s ---\n%s", name, s.dump())
		}
	})
	return s
}

// all returns every message received so far.
func (s *notifySock) all() []notifyMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

func (s *notifySock) dump() string {
	var b strings.Builder
	for _, m := range s.all() {
		if m.raw != "WATCHDOG=1" {
			fmt.Fprintln(&b, m)
		}
	}
	return b.String()
}

// next waits for the next message, after those returned by earlier calls,
// that has field key set to value (any value when value is ""), and
// fails the test after within.
func (s *notifySock) next(t *testing.T, within time.Duration, key, value string) notifyMsg {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		for ; s.cursor < len(s.msgs); s.cursor++ {
			m := s.msgs[s.cursor]
			if v, ok := m.fields[key]; ok && (value == "" || v == value) {
				s.cursor++
				s.mu.Unlock()
				return m
			}
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-deadline.C:
			t.Fatalf("no %s=%s on the notify socket within %v", key, value, within)
		}
	}
}

// pings returns the arrival times of the WATCHDOG=1 messages.
func (s *notifySock) pings() []time.Time {
	var at []time.Time
	for _, m := range s.all() {
		if m.fields["WATCHDOG"] == "1" {
			at = append(at, m.at)
		}
	}
	return at
}

// waitPings waits until n WATCHDOG=1 messages have arrived in all.
func (s *notifySock) waitPings(t *testing.T, n int, within time.Duration) {
	t.Helper()
	if !labtest.Eventually(within, func() bool { return len(s.pings()) >= n }) {
		t.Fatalf("%d WATCHDOG=1 messages within %v, want %d", len(s.pings()), within, n)
	}
}

// checkPingGaps requires WATCHDOG=1 at least every pingGapMax from the
// first ping up to until.
func checkPingGaps(t *testing.T, pings []time.Time, until time.Time) {
	t.Helper()
	if len(pings) < 2 {
		t.Fatalf("%d WATCHDOG=1 messages before %v, want a steady stream", len(pings), until.Format("15:04:05.000"))
	}
	for i := 1; i < len(pings) && pings[i].Before(until); i++ {
		if gap := pings[i].Sub(pings[i-1]); gap > pingGapMax {
			t.Errorf("WATCHDOG=1 gap of %v at %v, want at most %v", gap.Round(time.Millisecond), pings[i].Format("15:04:05.000"), pingGapMax)
		}
	}
}

// startNotified runs `godwit run -c cfg` in ns with a fake notify socket,
// a 1 s watchdog and the extra environment variables env.
func startNotified(t *testing.T, l *netlab.Lab, ns *netlab.NS, name, cfg string, env ...string) (*labtest.Daemon, *notifySock) {
	t.Helper()
	s := newNotifySock(t, l, name)
	env = append([]string{"NOTIFY_SOCKET=" + s.path, fmt.Sprintf("WATCHDOG_USEC=%d", watchdogInterval.Microseconds())}, env...)
	return labtest.StartDaemon(t, ns, name, cfg, env...), s
}

// setInterfaceKey adds `line` to the [interface] table of the config file.
func setInterfaceKey(t *testing.T, path, line string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Replace(string(b), "[interface]\n", "[interface]\n"+line+"\n", 1)
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}

// quicAnswers reports whether a QUIC endpoint answers at addr (seen from
// ns): it sends a padded Initial of an unknown version, which any QUIC
// server answers with a Version Negotiation packet (RFC 9000, 6.1).
func quicAnswers(t *testing.T, ns *netlab.NS, addr netip.AddrPort) bool {
	t.Helper()
	c, err := ns.DialUDP(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pkt := make([]byte, 1200)
	pkt[0] = 0xc0                                  // long header, Initial
	copy(pkt[1:5], []byte{0x1a, 0x2a, 0x3a, 0x4a}) // a reserved version
	pkt[5] = 8                                     // DCID length
	rand.Read(pkt[6:14])
	pkt[14] = 8 // SCID length
	rand.Read(pkt[15:23])
	buf := make([]byte, 1500)
	for range 3 {
		if _, err := c.Write(pkt); err != nil {
			t.Fatalf("sending a QUIC probe to %v: %v", addr, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		// Version Negotiation: long header, version 0, our SCID as DCID.
		if n > 23 && buf[0]&0x80 != 0 && bytes.Equal(buf[1:5], []byte{0, 0, 0, 0}) && buf[5] == 8 && bytes.Equal(buf[6:14], pkt[15:23]) {
			return true
		}
	}
	return false
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as in MONOTONIC_USEC.
func monotonicUsec(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

// TestSystemdHub follows a hub through start, watchdog, a peer connecting,
// a good and a bad reload, the peer leaving and SIGTERM.
func TestSystemdHub(t *testing.T) {
	tp := newTopo(t, 1, false)
	s := tp.sites[0]
	h4, _ := underlay(1, 1)
	hubPath := tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port)).write(t, tp.lab)
	good, err := os.ReadFile(hubPath)
	must(t, err)
	hub, ns := startNotified(t, tp.lab, tp.hub, "hub", hubPath)

	// Start: READY only once the TUN has its address and the listener
	// answers, which must hold the moment READY arrives.
	ready := ns.next(t, 10*time.Second, "READY", "1")
	a4, a6 := tunAddrs(0)
	if got := addrs(t, tp.hub, tunName); !slices.Contains(got, netip.PrefixFrom(a4, 24)) || !slices.Contains(got, netip.PrefixFrom(a6, 64)) {
		t.Errorf("at READY=1, %s has addresses %v, want %v/24 and %v/64", tunName, got, a4, a6)
	}
	if !quicAnswers(t, tp.hub, netip.AddrPortFrom(h4, port)) {
		t.Errorf("at READY=1, nothing answers QUIC on %v:%d", h4, port)
	}
	if got, want := ready.fields["STATUS"], "0/1 peers connected"; got != want {
		t.Errorf("STATUS with READY=1 = %q, want %q", got, want)
	}

	// A site connects: one STATUS line says so.
	site := tp.start(t, s.ns, tp.siteConf(s, false))
	if m := ns.next(t, labtest.ConnectWithin, "STATUS", "1/1 peers connected"); m.fields["READY"] != "" {
		t.Errorf("connect sent %q, want a STATUS line without READY", m.raw)
	}

	// Two seconds of watchdog pings at half the interval.
	ns.waitPings(t, 5, 5*time.Second)

	// A good reload: RELOADING=1 with our CLOCK_MONOTONIC, then READY=1.
	must(t, hub.Signal(syscall.SIGHUP))
	rl := ns.next(t, 2*time.Second, "RELOADING", "1")
	now := monotonicUsec(t)
	mono, err := strconv.ParseInt(rl.fields["MONOTONIC_USEC"], 10, 64)
	if err != nil || mono > now || now-mono > time.Second.Microseconds() {
		t.Errorf("RELOADING=1 came with MONOTONIC_USEC=%q, want a time within 1 s before our CLOCK_MONOTONIC %d", rl.fields["MONOTONIC_USEC"], now)
	}
	rd := ns.next(t, 2*time.Second, "READY", "1")
	if d := rd.at.Sub(rl.at); d > time.Second {
		t.Errorf("READY=1 came %v after RELOADING=1, want within 1 s", d)
	}
	if got, want := rd.fields["STATUS"], "1/1 peers connected"; got != want {
		t.Errorf("STATUS after a good reload = %q, want %q", got, want)
	}

	// A bad reload: RELOADING, READY and a STATUS naming the problem; the
	// old config keeps working.
	must(t, os.WriteFile(hubPath, append(slices.Clone(good), "\n[[peer]]\nname = \"bad\"\nbogus = 1\n"...), 0o644))
	must(t, hub.Signal(syscall.SIGHUP))
	ns.next(t, 2*time.Second, "RELOADING", "1")
	rd = ns.next(t, 2*time.Second, "READY", "1")
	st := rd.fields["STATUS"]
	if !strings.Contains(st, "reload failed") || !strings.Contains(st, hubPath+":") || !strings.Contains(st, "bogus") || !strings.Contains(st, "previous config") {
		t.Errorf("STATUS after a bad reload = %q, want it to say that the reload failed, where (%s:line), what (bogus) and that the previous config runs", st, hubPath)
	}
	if len(hub.LogLines("reload failed", "bogus")) == 0 {
		t.Errorf("no log line about the failed reload")
	}
	pingOK(t, s.ns, a4)

	// The site leaves: one STATUS line says so.
	site.Stop(t, 2*time.Second)
	ns.next(t, 5*time.Second, "STATUS", "0/1 peers connected")

	// Stop: STOPPING=1, exit 0 within 2 s, gw0 gone.
	stopAt := time.Now()
	hub.Stop(t, 2*time.Second)
	st0 := ns.next(t, time.Second, "STOPPING", "1")
	if linkExists(t, tp.hub, tunName) {
		t.Errorf("%s still exists after the hub exited", tunName)
	}
	if r := tunRoutes(t, tp.hub, tunName); len(r) > 0 {
		t.Errorf("routes through %s left after the hub exited: %v", tunName, r)
	}
	checkPingGaps(t, ns.pings(), stopAt)

	// Order: one READY at start and one per reload, STOPPING last.
	var seq []string
	for _, m := range ns.all() {
		for _, k := range []string{"READY", "RELOADING", "STOPPING"} {
			if m.fields[k] == "1" {
				seq = append(seq, k)
			}
		}
	}
	if want := []string{"READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"}; !slices.Equal(seq, want) {
		t.Errorf("sequence %q, want %q", seq, want)
	}
	for _, m := range ns.all() {
		if m.at.After(st0.at) && m.fields["WATCHDOG"] == "1" {
			t.Errorf("WATCHDOG=1 at %v after STOPPING=1", m.at.Format("15:04:05.000"))
		}
	}
}

// TestSystemdSiteReady checks that a site reports READY only once its hub
// is connected, and that a site whose hub does not answer reports READY
// after ready_wait with a STATUS saying what is missing.
func TestSystemdSiteReady(t *testing.T) {
	tp := newTopo(t, 2, false)
	s1, s2 := tp.sites[0], tp.sites[1]
	tp.start(t, tp.hub, tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port)))

	// s2 dials a port where nothing listens: the hub is absent for it.
	c2 := tp.siteConf(s2, false)
	h4, _ := underlay(s2.i, 1)
	c2.peers[0].endpoint = netip.AddrPortFrom(h4, port+1).String()
	p2 := c2.write(t, tp.lab)
	const readyWait = 2 * time.Second
	setInterfaceKey(t, p2, fmt.Sprintf("ready_wait = %q", readyWait.String()))

	start := time.Now()
	site1, n1 := startNotified(t, tp.lab, s1.ns, "s1", tp.siteConf(s1, false).write(t, tp.lab))
	_, n2 := startNotified(t, tp.lab, s2.ns, "s2", p2)

	r1 := n1.next(t, labtest.ConnectWithin, "READY", "1")
	if len(site1.LogLines("peer connected", "peer=hub")) == 0 {
		t.Errorf("s1 sent READY=1 before its log said the hub is connected")
	}
	if got, want := r1.fields["STATUS"], "1/1 peers connected"; got != want {
		t.Errorf("s1 STATUS with READY=1 = %q, want %q", got, want)
	}

	r2 := n2.next(t, readyWait+10*time.Second, "READY", "1")
	if d := r2.at.Sub(start); d < readyWait-200*time.Millisecond {
		t.Errorf("s2 (hub absent) sent READY=1 after %v, want after ready_wait %v", d, readyWait)
	}
	if st := r2.fields["STATUS"]; !strings.Contains(st, "0/1 peers connected") || !strings.Contains(st, "not connected") || !strings.Contains(st, "hub") {
		t.Errorf("s2 STATUS with READY=1 = %q, want it to say that hub is not connected", st)
	}
	checkPingGaps(t, n1.pings(), time.Now())
	checkPingGaps(t, n2.pings(), time.Now())
}

// TestSystemdWatchdogWedge wedges the control loop of one hub and the data
// path of another (through the GODWIT_DEBUG_WEDGE test hook) and checks
// that WATCHDOG=1 is steady before the wedge and stops right after it.
func TestSystemdWatchdogWedge(t *testing.T) {
	tp := newTopo(t, 1, false)
	conf := tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port))
	tests := []struct {
		loop string
		ns   *netlab.NS
	}{
		{"control", tp.hub},
		{"datapath", tp.sites[0].ns}, // a second hub in the other namespace
	}
	for _, tt := range tests {
		t.Run(tt.loop, func(t *testing.T) {
			t.Parallel()
			c := conf
			c.name = "hub-" + tt.loop
			d, ns := startNotified(t, tp.lab, tt.ns, c.name, c.write(t, tp.lab),
				"GODWIT_DEBUG_WEDGE="+tt.loop, "GODWIT_DEBUG_WEDGE_AFTER=2s")
			ns.next(t, 10*time.Second, "READY", "1")
			if tt.loop == "datapath" {
				// The data path wedges in its next TUN write: keep it busy
				// with pings to an address without a peer, which the tunnel
				// answers with ICMP errors.
				done := make(chan struct{})
				go func() {
					defer close(done)
					_, _ = tt.ns.Ping(netip.AddrFrom4([4]byte{198, 19, 0, 99}), 40, 100*time.Millisecond, 100*time.Millisecond)
				}()
				t.Cleanup(func() { <-done })
			}
			w := ns.next(t, 10*time.Second, "STATUS", "debug: wedged the "+map[string]string{"control": "control loop", "datapath": "data path"}[tt.loop])
			// Watch for 1.5 intervals after the wedge.
			time.Sleep(watchdogInterval * 3 / 2)
			pings := ns.pings()
			checkPingGaps(t, pings, w.at)
			// A check that passed just before the wedge may still ping,
			// but no later than the answer bound (a quarter interval).
			for _, p := range pings {
				if p.After(w.at.Add(watchdogInterval/4 + 100*time.Millisecond)) {
					t.Errorf("WATCHDOG=1 at %v, %v after the %s loop wedged", p.Format("15:04:05.000"), p.Sub(w.at).Round(time.Millisecond), tt.loop)
				}
			}
			if len(d.LogLines("watchdog: no progress")) == 0 {
				t.Errorf("no log line saying that the watchdog saw no progress")
			}
			if tt.loop == "control" {
				// What systemd does to a wedged service (after SIGABRT).
				must(t, d.Signal(syscall.SIGKILL))
				if _, err := d.Wait(5 * time.Second); err != nil {
					t.Error(err)
				}
				return
			}
			// A wedged TUN write gives up when the device is closed, so
			// the daemon still stops cleanly.
			d.Stop(t, 2*time.Second)
		})
	}
}
