// SPDX-License-Identifier: MIT

package tcppath

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Network is what [Addr.Network] returns.
const Network = "godwit-tcp"

// Addr is the net.Addr of one TLS-over-TCP connection: the peer's TCP
// address and a connection number. A [Listener] gives each accepted
// client its own number (from 1, never reused), so a client that
// reconnects from the same TCP address is a new remote address to
// quic-go, as a NAT rebinding would be; a [PacketConn] names its hub with
// number 0. Addrs are comparable; only this package makes them.
type Addr struct {
	tcp netip.AddrPort
	id  uint64
	// s is String's result, made once: quic-go compares a server
	// connection's remote addresses by their String for every packet it
	// receives (addrsEqual in path_manager.go).
	s string
}

func newAddr(tcp netip.AddrPort, id uint64) Addr {
	s := tcp.String()
	if id != 0 {
		s += "#" + strconv.FormatUint(id, 10)
	}
	return Addr{tcp: tcp, id: id, s: s}
}

// addrPortOf returns the address of a TCP endpoint, IPv4-mapped IPv6
// addresses unmapped; the zero AddrPort for anything else.
func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// Network returns [Network].
func (a Addr) Network() string { return Network }

// String returns the TCP address, followed by "#" and the connection
// number when it is not 0: "192.0.2.7:50312#12".
func (a Addr) String() string { return a.s }

// TCP returns the peer's TCP address as seen from this side: the
// client's address on a Listener; on a PacketConn, the address it is
// connected to (the HTTP proxy's, when it dialed through one).
func (a Addr) TCP() netip.AddrPort { return a.tcp }

// ID returns the connection number: unique among a Listener's clients
// (from 1), 0 on a PacketConn.
func (a Addr) ID() uint64 { return a.id }

// deadline is a read deadline that a select can wait on, with the same
// scheme as net.Pipe's: a channel closed when the deadline passes,
// replaced when a later deadline is set.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	passed chan struct{} // closed once the deadline has passed
}

func newDeadline() *deadline { return &deadline{passed: make(chan struct{})} }

// set sets the deadline to t; the zero t means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.passed // the timer fired: wait until its function closed passed
	}
	d.timer = nil
	closed := isClosed(d.passed)
	if t.IsZero() {
		if closed {
			d.passed = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.passed = make(chan struct{})
		}
		ch := d.passed
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	if !closed {
		close(d.passed)
	}
}

// wait returns a channel that is closed once the current deadline has
// passed.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.passed
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// writeDeadline is a write deadline for a WriteTo that never blocks: it
// only has to say whether the deadline has passed.
type writeDeadline struct {
	ns atomic.Int64 // Unix nanoseconds; 0: none
}

func (d *writeDeadline) set(t time.Time) {
	if t.IsZero() {
		d.ns.Store(0)
		return
	}
	d.ns.Store(t.UnixNano())
}

// passed reports whether the deadline has passed. It reads the clock only
// when a deadline is set.
func (d *writeDeadline) passed() bool {
	ns := d.ns.Load()
	return ns != 0 && time.Now().UnixNano() >= ns
}
