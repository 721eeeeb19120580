// SPDX-License-Identifier: MIT

package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
)

// NS is a network namespace made by [Lab.NS]. Its methods are safe for
// concurrent use.
type NS struct {
	// Name is the full namespace name, as `ip netns` shows it.
	Name string

	lab *Lab
}

// Exec runs `ip netns exec <Name> args...` and returns its combined output.
// The error names the command and includes its output.
func (n *NS) Exec(args ...string) (string, error) {
	return output("ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// Addr adds prefix (for example "198.18.0.1/24" or "2001:db8::1/64") to
// the interface ifname. IPv6 addresses are added with nodad, so they are
// usable at once.
func (n *NS) Addr(ifname, prefix string) error {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	args := []string{"-n", n.Name, "addr", "add", p.String(), "dev", ifname}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	return run("ip", args...)
}

// Sysctl sets key (dotted, for example "net.ipv4.ip_forward") to value
// inside the namespace by writing /proc/sys there.
func (n *NS) Sysctl(key, value string) error {
	if strings.Contains(key, "..") || strings.ContainsAny(key, "/ ") {
		return fmt.Errorf("netlab: bad sysctl key %q", key)
	}
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	_, err := n.Exec("sh", "-c", `printf '%s\n' "$1" > "$2"`, "sh", value, path)
	return err
}

// Do runs f on a locked OS thread that has switched into the namespace,
// then switches back. Sockets created in f stay in the namespace and may be
// used from any goroutine afterwards. f must not start goroutines that
// expect to run in the namespace: only f's own thread is switched.
func (n *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	// A fresh goroutine keeps the caller's thread (and its lock state)
	// untouched. If switching back fails, the goroutine exits still locked
	// and the runtime throws the tainted thread away.
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("netlab: current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(n.Name)
		if err != nil {
			errc <- fmt.Errorf("netlab: netns %s: %w", n.Name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("netlab: enter netns %s: %w", n.Name, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("netlab: leave netns %s: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Start runs args in the background inside the namespace through
// `ip netns exec` (which execs, so the process is args[0] itself), with
// stdout and stderr going to Dir/<name>.log. The lab tracks the process and
// stops it in Close.
func (n *NS) Start(name string, args ...string) (*Proc, error) {
	if len(args) == 0 {
		return nil, errors.New("netlab: start: no command")
	}
	l := n.lab
	logPath := filepath.Join(l.Dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	cmd.Stdout = f
	cmd.Stderr = f
	// Its own process group lets Close kill helpers the process forked;
	// Pdeathsig ends it if this program dies without running Close.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Proc{Name: name, Log: logPath, Cmd: cmd, done: make(chan struct{})}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("netlab: lab is closed")
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("netlab: start %s: %w", strings.Join(args, " "), err)
	}
	go p.wait()
	l.procs = append(l.procs, p)
	return p, nil
}

// open runs f inside the namespace (see [NS.Do]) and returns the socket it
// opened.
func open[T any](n *NS, f func() (T, error)) (T, error) {
	var c T
	err := n.Do(func() (err error) {
		c, err = f()
		return err
	})
	return c, err
}

// ListenTCP listens on addr (for example "198.19.0.1:8000") inside the
// namespace.
func (n *NS) ListenTCP(addr string) (net.Listener, error) {
	return open(n, func() (net.Listener, error) { return net.Listen("tcp", addr) })
}

// DialTCP dials addr from inside the namespace. It blocks until the
// connection is up, ctx is done or the dial fails.
func (n *NS) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	return open(n, func() (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
}

// ListenUDP binds a UDP socket to addr inside the namespace.
func (n *NS) ListenUDP(addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	return open(n, func() (*net.UDPConn, error) { return net.ListenUDP("udp", ua) })
}

// DialUDP makes a UDP socket inside the namespace connected to addr.
func (n *NS) DialUDP(addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	return open(n, func() (*net.UDPConn, error) { return net.DialUDP("udp", nil, ua) })
}
