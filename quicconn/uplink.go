// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/tcppath"

	"github.com/quic-go/quic-go"
)

// errUnknownUplink is returned (wrapped) for an uplink name that was never
// added with [Endpoint.AddUplink] or was removed with
// [Endpoint.RemoveUplink].
var errUnknownUplink = errors.New("quicconn: unknown uplink")

// uplink is one interface's UDP socket and Transport. The socket is bound
// to the wildcard address and to the device (SO_BINDTODEVICE), so it
// survives address changes on the interface: those look like a NAT
// rebinding to the peer. A Transport is never closed while a connection
// that used it lives (see RemoveUplink).
type uplink struct {
	name  string
	index int // the interface's index when the socket was bound
	sock  *sockConn
	tr    *quic.Transport

	// Guarded by Endpoint.upMu:
	users   int  // live conns that ever used tr, plus dials and probes in progress
	removed bool // RemoveUplink was called: no new dials or probes
	closed  bool
}

// uplinks is the Endpoint's set of uplink Transports.
type uplinks struct {
	byName    map[string]*uplink   // the current uplink of each name
	lingering map[*uplink]struct{} // removed and replaced, still used by live conns
	// wake is closed (and dropped) by UplinksChanged; nil until a
	// DialLoop asks for it.
	wake chan struct{}
}

// ErrNoUplink is returned (wrapped) by a DialLoop attempt when
// Mobility.PickUplink reports that no uplink is usable, or names one that
// is not added: the loop then waits for [Endpoint.UplinksChanged] instead
// of dialing on the Endpoint's own socket.
var ErrNoUplink = errors.New("quicconn: no usable uplink")

// uplinkInfo describes one uplink of an [Endpoint].
type uplinkInfo struct {
	Name  string
	Local netip.AddrPort // the socket's address: wildcard, bound to the device
	// Removed reports that RemoveUplink was called; the Transport stays
	// open while a live connection used it.
	Removed bool
	// Users counts live connections that used the uplink, plus dials and
	// probes in progress.
	Users int
}

// AddUplink opens a UDP socket on the wildcard address bound to the
// interface name (SO_BINDTODEVICE, with Config.FwMark) and a Transport on
// it that shares the connection-ID length and stateless-reset key of the
// Endpoint's own Transport, so that connections can move between them.
// Afterwards [Endpoint.DialVia] and [Conn.ProbeUplink] may use name.
// Adding a name that is already there is a no-op; adding one that was
// removed but is still in use reuses its Transport when the interface
// still has the same index. An uplink added or back wakes the dial loops
// as UplinksChanged does, so that a [Endpoint.DialLoopOn] waiting for it
// dials at once. It needs CAP_NET_RAW on kernels before 5.7.
// Safe for concurrent use.
func (e *Endpoint) AddUplink(name string) error {
	if name == "" {
		return fmt.Errorf("quicconn: add uplink: empty interface name")
	}
	index := 0
	if ifi, err := net.InterfaceByName(name); err == nil {
		index = ifi.Index
	}
	e.upMu.Lock()
	if e.upl.byName == nil {
		e.upl.byName = make(map[string]*uplink)
		e.upl.lingering = make(map[*uplink]struct{})
	}
	if e.ctx.Err() != nil {
		e.upMu.Unlock()
		return fmt.Errorf("quicconn: add uplink %s: %w", name, net.ErrClosed)
	}
	if u := e.upl.byName[name]; u != nil {
		if !u.removed {
			e.upMu.Unlock()
			return nil
		}
		if u.index == index {
			u.removed = false
			e.upMu.Unlock()
			e.log.Debug("quicconn: uplink back", "uplink", name)
			e.UplinksChanged()
			return nil
		}
		// The interface was re-created: the old socket is bound to an
		// index that no longer exists.
		delete(e.upl.byName, name)
		e.upl.lingering[u] = struct{}{}
	}
	e.upMu.Unlock()

	sock, err := listenUDPOn("", name, e.cfg.FwMark, &e.unreachable)
	if err != nil {
		return fmt.Errorf("quicconn: add uplink %s: %w", name, err)
	}
	u := &uplink{name: name, index: index, sock: sock, tr: &quic.Transport{
		Conn:                  sock,
		ConnectionIDLength:    e.tr.ConnectionIDLength,
		ConnectionIDGenerator: e.tr.ConnectionIDGenerator,
		StatelessResetKey:     e.tr.StatelessResetKey,
		TokenGeneratorKey:     e.tr.TokenGeneratorKey,
	}}
	e.upMu.Lock()
	if old := e.upl.byName[name]; old != nil || e.ctx.Err() != nil {
		// A concurrent AddUplink won, or the Endpoint closed meanwhile.
		e.upMu.Unlock()
		_ = sock.Close()
		if old == nil {
			return fmt.Errorf("quicconn: add uplink %s: %w", name, net.ErrClosed)
		}
		return nil
	}
	e.upl.byName[name] = u
	e.upMu.Unlock()
	e.log.Info("quicconn: uplink added", "uplink", name, "local", sock.LocalAddr().String())
	e.UplinksChanged()
	return nil
}

// RemoveUplink stops new dials and probes on the uplink name and drops
// every connection's standby path on it. Its Transport is closed once no
// live connection ever used it: a connection's IDs stay registered on
// every Transport it touched, and quic-go closes every connection
// registered on a Transport when it closes.
// Removing an unknown name is a no-op. Safe for concurrent use.
func (e *Endpoint) RemoveUplink(name string) error {
	e.upMu.Lock()
	u := e.upl.byName[name]
	if u == nil || u.removed {
		e.upMu.Unlock()
		return nil
	}
	u.removed = true
	unused := u.users == 0
	if unused {
		delete(e.upl.byName, name)
		u.closed = true
	}
	e.upMu.Unlock()

	e.mu.Lock()
	conns := make([]*Conn, 0, len(e.conns))
	for c := range e.conns {
		conns = append(conns, c)
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.dropStandby(name)
	}
	if unused {
		e.closeUplink(u)
	}
	e.log.Info("quicconn: uplink removed", "uplink", name, "closed", unused)
	return nil
}

// uplinkList lists the Endpoint's uplinks, lingering removed ones included,
// sorted by name. Safe for concurrent use.
func (e *Endpoint) uplinkList() []uplinkInfo {
	e.upMu.Lock()
	defer e.upMu.Unlock()
	var out []uplinkInfo
	add := func(u *uplink) {
		out = append(out, uplinkInfo{Name: u.name, Local: AddrPort(u.sock.LocalAddr()), Removed: u.removed, Users: u.users})
	}
	for _, u := range e.upl.byName {
		add(u)
	}
	for u := range e.upl.lingering {
		add(u)
	}
	slices.SortFunc(out, func(a, b uplinkInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// acquireUplink returns the usable uplink name with one more user; the
// caller must releaseUplink it.
func (e *Endpoint) acquireUplink(name string) (*uplink, error) {
	e.upMu.Lock()
	defer e.upMu.Unlock()
	u := e.upl.byName[name]
	if u == nil || u.removed {
		return nil, fmt.Errorf("%w %q", errUnknownUplink, name)
	}
	u.users++
	return u, nil
}

// holdUplink adds a user to u, which the caller already holds.
func (e *Endpoint) holdUplink(u *uplink) {
	e.upMu.Lock()
	u.users++
	e.upMu.Unlock()
}

// releaseUplink drops one user of u and closes u when it was removed and
// this was its last user.
func (e *Endpoint) releaseUplink(u *uplink) {
	e.upMu.Lock()
	u.users--
	last := u.users == 0 && u.removed && !u.closed
	if last {
		u.closed = true
		if e.upl.byName[u.name] == u {
			delete(e.upl.byName, u.name)
		}
		delete(e.upl.lingering, u)
	}
	e.upMu.Unlock()
	if last {
		e.closeUplink(u)
	}
}

func (e *Endpoint) closeUplink(u *uplink) {
	err := errors.Join(u.tr.Close(), u.sock.Close())
	if err != nil {
		e.log.Warn("quicconn: closing uplink", "uplink", u.name, "err", err)
		return
	}
	e.log.Debug("quicconn: uplink transport closed", "uplink", u.name)
}

// closeUplinks closes every uplink; Close calls it after the conns are
// closed.
func (e *Endpoint) closeUplinks() []error {
	e.upMu.Lock()
	var all []*uplink
	for _, u := range e.upl.byName {
		all = append(all, u)
	}
	for u := range e.upl.lingering {
		all = append(all, u)
	}
	clear(e.upl.byName)
	clear(e.upl.lingering)
	for _, u := range all {
		u.closed = true
	}
	e.upMu.Unlock()
	var errs []error
	for _, u := range all {
		if err := errors.Join(u.tr.Close(), u.sock.Close()); err != nil {
			errs = append(errs, fmt.Errorf("uplink %s: %w", u.name, err))
		}
	}
	return errs
}

// DialVia is [Endpoint.Dial] on the Transport of the uplink (see
// AddUplink); "" means the Endpoint's own socket. The connection starts
// with that uplink as its active path ([Conn.Uplink]). An unknown or
// removed uplink fails. The caller
// owns the returned Conn.
func (e *Endpoint) DialVia(ctx context.Context, uplink, addr string, peer key.Public) (*Conn, error) {
	return e.dialVia(ctx, uplink, addr, peer, false)
}

// dialVia is DialVia; pinned makes the Conn belong to the uplink
// (DialLoopOn).
func (e *Endpoint) dialVia(ctx context.Context, uplink, addr string, peer key.Public, pinned bool) (*Conn, error) {
	if uplink == "" {
		c, err := e.dial(ctx, e.tr, addr, peer, pinned)
		if err != nil {
			return nil, err
		}
		c.initPath(nil)
		return c, nil
	}
	u, err := e.acquireUplink(uplink)
	if err != nil {
		return nil, fmt.Errorf("quicconn: dial %s via %s: %w", addr, uplink, err)
	}
	defer e.releaseUplink(u)
	c, err := e.dial(ctx, u.tr, addr, peer, pinned)
	if err != nil {
		return nil, fmt.Errorf("via %s: %w", uplink, err)
	}
	c.initPath(u)
	return c, nil
}

// UplinksChanged tells every DialLoop that the usable uplinks changed: a
// loop that waits because no uplink was usable (ErrNoUplink), or that
// backs off after a failed attempt, asks Mobility.PickUplink again and
// dials at once. Call it after the answer of PickUplink changed. Safe for
// concurrent use; it does not block.
func (e *Endpoint) UplinksChanged() {
	e.upMu.Lock()
	defer e.upMu.Unlock()
	if e.upl.wake != nil {
		close(e.upl.wake)
		e.upl.wake = nil
	}
}

// uplinkWake returns a channel that the next UplinksChanged closes.
func (e *Endpoint) uplinkWake() <-chan struct{} {
	e.upMu.Lock()
	defer e.upMu.Unlock()
	if e.upl.wake == nil {
		e.upl.wake = make(chan struct{})
	}
	return e.upl.wake
}

// pickUplink returns the uplink DialLoop dials on: "" (the main socket)
// without Mobility.PickUplink or when it says so, else the uplink it names.
// It fails with ErrNoUplink when PickUplink reports none usable or names
// one that is not added: a site with uplinks never dials outside them.
func (e *Endpoint) pickUplink() (string, error) {
	mob := e.mobility()
	if mob == nil {
		return "", nil
	}
	name, ok := mob.PickUplink()
	if !ok {
		return "", ErrNoUplink
	}
	if name == "" {
		return "", nil
	}
	e.upMu.Lock()
	defer e.upMu.Unlock()
	if u := e.upl.byName[name]; u == nil || u.removed {
		return "", fmt.Errorf("%w: %s is not added", ErrNoUplink, name)
	}
	return name, nil
}

// AddrPort converts a socket address of this package (the LocalAddr and
// RemoteAddr of a [Conn], the LocalAddr of an [Endpoint]: a
// *net.UDPAddr) to netip, unmapping IPv4. An address of another type is
// parsed from its String, and is the zero AddrPort if that fails.
func AddrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case tcppath.Addr:
		ap := a.TCP()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
