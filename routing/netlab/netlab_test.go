// SPDX-License-Identifier: MIT

package netlab_test

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// pair builds
//
//	a (eth0 198.18.0.1/24 2001:db8::1/64) <-veth-> b (eth0 198.18.0.2/24 2001:db8::2/64)
func pair(t *testing.T, l *netlab.Lab) (a, b *netlab.NS) {
	t.Helper()
	var err error
	if a, err = l.NS("a"); err != nil {
		t.Fatal(err)
	}
	if b, err = l.NS("b"); err != nil {
		t.Fatal(err)
	}
	if err := l.Link(a, "eth0", b, "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		ns   *netlab.NS
		addr string
	}{{a, "198.18.0.1/24"}, {a, "2001:db8::1/64"}, {b, "198.18.0.2/24"}, {b, "2001:db8::2/64"}} {
		if err := s.ns.Addr("eth0", s.addr); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

func TestPing(t *testing.T) {
	l := labtest.NewLab(t, "nlt")
	a, b := pair(t, l)
	tests := []struct {
		name string
		from *netlab.NS
		dst  string
		want int
	}{
		{"v4", a, "198.18.0.2", 3},
		{"v6", b, "2001:db8::1", 3},
		{"unreachable", a, "198.18.0.9", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := netip.MustParseAddr(tt.dst)
			if tt.want > 0 {
				if err := tt.from.WaitPing(dst, 5*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			got, err := tt.from.Ping(dst, 3, 50*time.Millisecond, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got.Sent != 3 || got.Received != tt.want || len(got.RTTs) != tt.want {
				t.Errorf("Ping(%v) = %+v, want Sent 3, Received %d", dst, got, tt.want)
			}
		})
	}
	if err := a.WaitPing(netip.MustParseAddr("198.18.0.9"), 300*time.Millisecond); err == nil {
		t.Errorf("WaitPing(unused address) = nil, want error")
	}
}

// TestPinger takes the link away under a Pinger for 300 ms: it sees the
// outage as a gap between replies and as lost requests, and replies come
// again afterwards.
func TestPinger(t *testing.T) {
	l := labtest.NewLab(t, "nlp")
	a, _ := pair(t, l)
	dst := netip.MustParseAddr("198.18.0.2")
	if err := a.WaitPing(dst, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p, err := a.StartPinger(dst, 20*time.Millisecond, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	ctx := context.Background()
	if _, err := p.ReplyAfter(ctx, time.Now(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	if _, err := a.Exec("ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := a.Exec("ip", "link", "set", "eth0", "up"); err != nil {
		t.Fatal(err)
	}
	back, err := p.ReplyAfter(ctx, time.Now(), 5*time.Second)
	if err != nil {
		t.Fatalf("after the link came back: %v", err)
	}
	time.Sleep(600 * time.Millisecond) // past the grace for replies in flight
	gap, lost, sent := p.Outage(down, time.Now())
	// The gap starts at the last reply before down: up to one interval
	// (and a round trip) earlier.
	if most := back.Sub(down) + 100*time.Millisecond; gap < 300*time.Millisecond || gap > most {
		t.Errorf("Outage gap = %v, want at least the 300 ms the link was down and at most %v", gap, most)
	}
	if lost < 10 || sent <= lost {
		t.Errorf("Outage lost %d of %d requests, want at least 10 (300 ms at 50 Hz) and some answered", lost, sent)
	}
	p.Stop()
	if n := p.Received(); n < 10 {
		t.Errorf("Received = %d after Stop, want the replies before and after the outage", n)
	}
}

func TestTCPUDP(t *testing.T) {
	l := labtest.NewLab(t, "nlt")
	a, b := pair(t, l)
	ln, err := b.ListenTCP("[2001:db8::2]:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := bytes.Repeat([]byte("netlab"), 100000)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(want)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.DialTCP(ctx, "[2001:db8::2]:7000")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("TCP read %d bytes (err %v), want %d identical bytes", len(got), err, len(want))
	}

	u, err := b.ListenUDP("198.18.0.2:7001")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	d, err := a.DialUDP("198.18.0.2:7001")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	nr, from, err := u.ReadFromUDP(buf)
	if err != nil || string(buf[:nr]) != "hello" || from.AddrPort().Addr().Unmap() != netip.MustParseAddr("198.18.0.1") {
		t.Errorf("UDP got %q from %v (err %v), want \"hello\" from 198.18.0.1", buf[:nr], from, err)
	}
}

func TestExecSysctlDo(t *testing.T) {
	l := labtest.NewLab(t, "nlt")
	a, err := l.NS("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	out, err := a.Exec("cat", "/proc/sys/net/ipv4/ip_forward")
	if got := strings.TrimSpace(out); err != nil || got != "1" {
		t.Errorf("ip_forward in ns = %q (err %v), want 1", got, err)
	}
	host, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if _, err := a.Exec("false"); err == nil || !strings.Contains(err.Error(), "false") {
		t.Errorf("Exec(false) error = %v, want one naming the command", err)
	}
	// Do must switch only its own thread: a link made in the namespace is
	// not visible on the host.
	if err := a.Do(func() error {
		return exec.Command("ip", "link", "add", "dummy7", "type", "veth", "peer", "dummy7p").Run()
	}); err != nil {
		t.Fatal(err)
	}
	if out, err := a.Exec("ip", "link", "show", "dummy7"); err != nil {
		t.Errorf("dummy7 missing in namespace: %v %s", err, out)
	}
	if exec.Command("ip", "link", "show", "dummy7").Run() == nil {
		t.Errorf("dummy7 leaked into the host namespace")
	}
	if now, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); !bytes.Equal(now, host) {
		t.Errorf("host ip_forward changed from %q to %q", host, now)
	}
}

func TestStartWaitClose(t *testing.T) {
	l := labtest.NewLab(t, "nlt")
	a, err := l.NS("p")
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Start("echo", "sh", "-c", "echo hi; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(5 * time.Second); err != nil || code != 3 {
		t.Errorf("Wait = %d, %v; want 3, nil", code, err)
	}
	if got := p.Output(); got != "hi\n" {
		t.Errorf("Output = %q, want %q", got, "hi\n")
	}
	s, err := a.Start("sleeper", "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Wait(100 * time.Millisecond); err == nil {
		t.Errorf("Wait on a running process = nil error, want timeout")
	}
	// A process that ignores SIGTERM must still go away on Close.
	stubborn, err := a.Start("stubborn", "sh", "-c", "trap '' TERM; echo ready; sleep 60 & wait")
	if err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, 2*time.Second, "ready from the stubborn process", func() bool {
		return strings.Contains(stubborn.Output(), "ready")
	})
	if err := s.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := s.Wait(5 * time.Second); err != nil || code != -1 {
		t.Errorf("Wait after SIGTERM = %d, %v; want -1, nil", code, err)
	}
	dir := l.Dir
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if d := time.Since(start); d < 2*time.Second || d > 10*time.Second {
		t.Errorf("Close took %v, want about 3 s (SIGTERM grace, then SIGKILL)", d)
	}
	if _, err := stubborn.Wait(time.Second); err != nil {
		t.Errorf("stubborn process survived Close: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Dir %s still exists after Close (stat err %v)", dir, err)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), a.Name) {
		t.Errorf("namespace %s still exists after Close", a.Name)
	}
	if _, err := l.NS("late"); err == nil {
		t.Errorf("NS after Close = nil error, want one")
	}
}

// TestRemoveStale: a lab whose program died (kill -9: no Close) loses its
// namespaces and directory to RemoveStale; a live program's lab stays.
func TestRemoveStale(t *testing.T) {
	labtest.RequireRoot(t)
	const prefix = "gwstale"
	dead, err := netlab.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dead.Close() })
	ns, err := dead.NS("x")
	if err != nil {
		t.Fatal(err)
	}
	live := labtest.NewLab(t, prefix)
	liveNS, err := live.NS("y")
	if err != nil {
		t.Fatal(err)
	}
	// The dead lab's owner: a process that has exited.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dead.Dir+"/owner.pid", []byte(strconv.Itoa(gone.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	removed, err := netlab.RemoveStale(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != dead.Dir {
		t.Errorf("RemoveStale removed %q, want only %s", removed, dead.Dir)
	}
	if _, err := os.Stat(dead.Dir); !os.IsNotExist(err) {
		t.Errorf("the dead lab's directory is still there: %v", err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), ns.Name) {
		t.Errorf("the dead lab's namespace %s is still there", ns.Name)
	}
	if !strings.Contains(string(out), liveNS.Name) {
		t.Errorf("the live lab's namespace %s was removed", liveNS.Name)
	}
	if _, err := os.Stat(live.Dir); err != nil {
		t.Errorf("the live lab's directory: %v", err)
	}
}
