// SPDX-License-Identifier: MIT

// Package labtest holds what Godwit's tests share when they need root, a
// network lab or a running daemon: the GODWIT_E2E gate that turns skips
// into failures, a [netlab.Lab] that closes itself, the godwit binary,
// the polling helpers, and a daemon starter whose log is printed when the
// test fails and whose status is read over its control socket.
//
// It also has a UDP answering server, a Prometheus scraper and a check
// that no network namespace is left behind. It imports package testing,
// so only tests may import it; the programs (`godwit demo`, the
// benchmarks) use package netlab directly.
package labtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/routing/netlab"
)

// E2EEnv is the environment variable that, set to 1, makes a test that
// cannot run here (not root, a tool missing) fail instead of skip, as CI
// wants.
const E2EEnv = "GODWIT_E2E"

// E2E reports whether GODWIT_E2E=1 turns skips into failures.
func E2E() bool { return os.Getenv(E2EEnv) == "1" }

// SkipOrFail skips t with the message, or fails it when GODWIT_E2E=1.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	skipOrFail(t, E2E(), fmt.Sprintf(format, args...))
}

func skipOrFail(t testing.TB, e2e bool, msg string) {
	t.Helper()
	if e2e {
		t.Fatalf("%s=1: %s", E2EEnv, msg)
		return
	}
	t.Skipf("%s (set %s=1 to make this a failure)", msg, E2EEnv)
}

// RequireRoot skips t when the test does not run as root, or fails it
// when GODWIT_E2E=1.
func RequireRoot(t testing.TB) {
	t.Helper()
	requireRoot(t, os.Geteuid(), E2E())
}

func requireRoot(t testing.TB, euid int, e2e bool) {
	t.Helper()
	if euid != 0 {
		skipOrFail(t, e2e, "needs root (network namespaces, TUN devices, netlink)")
	}
}

// NewLab makes a lab whose namespaces start with prefix and closes it
// when the test ends. It requires root (see [RequireRoot]).
func NewLab(t testing.TB, prefix string) *netlab.Lab {
	t.Helper()
	RequireRoot(t)
	l, err := netlab.New(prefix)
	if err != nil {
		t.Fatalf("netlab.New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab.Close: %v", err)
		}
	})
	return l
}

// Godwit returns the godwit binary (see [netlab.Godwit]), built once per
// test binary.
func Godwit(t testing.TB) string {
	t.Helper()
	bin, err := netlab.Godwit()
	if err != nil {
		t.Fatalf("building godwit: %v", err)
	}
	return bin
}

// WaitFor polls cond (see [netlab.WaitFor]) until it holds, and fails t
// when it does not within `within`, saying "no <what> within <within>".
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := netlab.WaitFor(t.Context(), within, what, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatal(err)
	}
}

// Eventually polls cond (see [netlab.WaitFor]) and reports whether it held
// within `within`; for a test that reports the failure itself and goes on.
func Eventually(within time.Duration, cond func() bool) bool {
	return netlab.WaitFor(context.Background(), within, "", func() (bool, error) { return cond(), nil }) == nil
}

// CheckNamespacesRemoved makes t fail if, when it ends, more network
// namespaces whose names start with prefix exist than now: what the test
// runs must remove the namespaces it makes. Call it before the code under
// test makes any.
func CheckNamespacesRemoved(t testing.TB, prefix string) {
	t.Helper()
	before := countNamespaces(t, prefix)
	t.Cleanup(func() {
		if after := countNamespaces(t, prefix); after > before {
			t.Errorf("%d network namespaces named %s* left behind (%d before the test); ip netns list:\n%s",
				after-before, prefix, before, netnsList(t))
		}
	})
}

func countNamespaces(t testing.TB, prefix string) int {
	t.Helper()
	n := 0
	for line := range strings.Lines(netnsList(t)) {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}

// netnsList returns the output of `ip netns list`, failing t if the
// command fails.
func netnsList(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}

// ConnectWithin bounds how long a daemon may take to connect to a peer;
// generous for shared 2-core machines.
const ConnectWithin = 20 * time.Second

// Daemon is a running `godwit run` that belongs to a test.
type Daemon struct {
	*netlab.Daemon
}

// StartDaemon runs `godwit run -c config` in ns under name (see
// [netlab.NS.StartDaemon], which also says what env is), prints its log
// if the test fails, and leaves stopping it to the lab.
func StartDaemon(t testing.TB, ns *netlab.NS, name, config string, env ...string) *Daemon {
	t.Helper()
	d, err := ns.StartDaemon(name, Godwit(t), config, env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- log of %s ---\n%s", name, d.Output())
		}
	})
	return &Daemon{Daemon: d}
}

// Status reads the daemon's status over its control socket.
func (d *Daemon) Status(t testing.TB) *ctl.Status {
	t.Helper()
	st, err := d.Daemon.Status(t.Context())
	if err != nil {
		t.Fatalf("status of %s: %v", d.Name, err)
	}
	return st
}

// Peer returns the peer called name from the daemon's status, failing t
// without one.
func (d *Daemon) Peer(t testing.TB, name string) *ctl.PeerStatus {
	t.Helper()
	return PeerOf(t, d.Status(t), name)
}

// PeerOf returns the peer called name in st, failing t without one.
func PeerOf(t testing.TB, st *ctl.Status, name string) *ctl.PeerStatus {
	t.Helper()
	p := st.Peer(name)
	if p == nil {
		t.Fatalf("status of %s has no peer %q: %+v", st.Interface.Name, name, st.Peers)
	}
	return p
}

// WaitLog waits for a log line that contains every one of subs, and fails
// t when the daemon exits first or none comes within `within`.
func (d *Daemon) WaitLog(t testing.TB, within time.Duration, subs ...string) {
	t.Helper()
	if err := d.Daemon.WaitLog(t.Context(), within, subs...); err != nil {
		t.Fatal(err)
	}
}

// WaitConnected waits up to [ConnectWithin] until the daemon logs that
// peer is connected.
func (d *Daemon) WaitConnected(t testing.TB, peer string) {
	t.Helper()
	d.WaitLog(t, ConnectWithin, "peer connected", "peer="+peer)
}

// Stop sends SIGTERM and requires exit status 0 within `within`.
func (d *Daemon) Stop(t testing.TB, within time.Duration) {
	t.Helper()
	if err := d.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", d.Name, err)
	}
	code, err := d.Wait(within)
	if err != nil {
		t.Fatalf("%s after SIGTERM: %v", d.Name, err)
	}
	if code != 0 {
		t.Fatalf("%s exited with %d after SIGTERM, want 0", d.Name, code)
	}
}

// ServeUDP answers every datagram c receives with what reply returns for
// it (nothing when that is nil), from a goroutine of its own, until the
// test ends; then it closes c and waits for the goroutine. reply must not
// keep b, which the next datagram overwrites.
func ServeUDP(t testing.TB, c *net.UDPConn, reply func(b []byte, from netip.AddrPort) []byte) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if r := reply(buf[:n], from); r != nil {
				_, _ = c.WriteToUDPAddrPort(r, from)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
}

// Scrape fetches url with c (nil: a client with a 10 s timeout) and
// returns the samples of the Prometheus text format it serves as
// "name{labels}" -> value, the labels as Prometheus writes them (sorted by
// name). It fails t on any error.
func Scrape(t testing.TB, c *http.Client, url string) map[string]float64 {
	t.Helper()
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s\n%s", url, resp.Status, body)
	}
	m := make(map[string]float64)
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("scraping %s: bad sample line %q", url, line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scraping %s: bad sample line %q: %v", url, line, err)
		}
		m[line[:i]] = v
	}
	return m
}
