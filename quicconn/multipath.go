// SPDX-License-Identifier: MIT

package quicconn

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/internal/ctlmsg"
)

// Multipath announcement.
//
// A site with several uplinks keeps one connection per uplink to a hub;
// the hub groups a peer's connections into a set. To do that it must know
// that the peer runs such sets at all, which connections come from the
// same running daemon, and how the site wants the hub's direction
// scheduled. So an Endpoint with Config.Multipath sends, on every
// connection, a Hello with ctlmsg.CapMultipath and right after it a
// ctlmsg.Multipath message: the Endpoint's Instance, and from a dialer
// the mode Config.MultipathMode chose for the peer. A reader whose peer's
// Hello has the bit expects that message next, under the hello's
// deadline. A peer without the bit sends nothing more and is expected to
// send nothing more; an old peer that does not know the bit skips the
// Multipath message as an unknown type. The message is only valid there:
// one arriving later closes the connection as a protocol error.

// MultipathMode is how packets to a peer are scheduled over the set of
// connections to it; a dialer announces it for its peer
// ([Config.MultipathMode]) and the acceptor applies it to its direction.
type MultipathMode uint8

// The multipath modes. Their values are the wire values.
const (
	// MultipathFailover sends all traffic on the best healthy path.
	MultipathFailover = MultipathMode(ctlmsg.ModeFailover)
	// MultipathRedundant sends each packet on the two best paths.
	MultipathRedundant = MultipathMode(ctlmsg.ModeRedundant)
	// MultipathAggregate spreads flows (never one flow's packets) over
	// the paths.
	MultipathAggregate = MultipathMode(ctlmsg.ModeAggregate)
)

// String returns "failover", "redundant" or "aggregate" (the config
// file's words), or "mode(N)" for another value.
func (m MultipathMode) String() string {
	switch m {
	case MultipathFailover:
		return "failover"
	case MultipathRedundant:
		return "redundant"
	case MultipathAggregate:
		return "aggregate"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// PeerMultipath is what the peer of a [Conn] announced in its Multipath
// message.
type PeerMultipath struct {
	// Instance identifies the peer's running Endpoint ([Endpoint.Instance]):
	// connections with the same peer key and Instance come from one
	// running daemon; a new Instance for a known key means the peer
	// restarted, and its connections with another Instance are stale.
	Instance uint64
	// Mode and RedundancyAll are the dialer's choice for this peer
	// (Config.MultipathMode). On the dialing side they are always
	// MultipathFailover and false: what an acceptor sends is ignored.
	Mode          MultipathMode
	RedundancyAll bool
}

// Multipath returns what the peer announced. ok is true only when both
// sides set Config.Multipath; otherwise (an older peer, or this side does
// not announce) m is zero. On a connection handed out in 0-RTT ok stays
// false until its hello exchange completed.
func (c *Conn) Multipath() (m PeerMultipath, ok bool) {
	c.id.mu.Lock()
	defer c.id.mu.Unlock()
	return c.id.mp, c.id.mpOK
}

// Instance returns the random, non-zero 64-bit identifier of this
// Endpoint, chosen by NewEndpoint and announced to peers with
// Config.Multipath ([PeerMultipath.Instance]). It is the same for the
// Endpoint's whole life and differs between Endpoints.
func (e *Endpoint) Instance() uint64 { return e.instance }

// newInstance returns a random non-zero instance identifier.
func newInstance() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("quicconn: instance: %w", err)
		}
		if v := binary.BigEndian.Uint64(b[:]); v != 0 {
			return v, nil
		}
	}
}

// helloBytes returns this side's opening of the control stream: its Hello
// and, with Config.Multipath, its Multipath message. peer is the peer's
// key, which a dialer passes to Config.MultipathMode.
func (e *Endpoint) helloBytes(dialer bool, peer key.Public) []byte {
	h := ctlmsg.Hello{Version: e.version, Name: e.cfg.NodeName}
	var after []byte // what follows the Hello
	if e.cfg.Multipath {
		h.Capabilities |= ctlmsg.CapMultipath
		mp := ctlmsg.Multipath{Instance: e.instance}
		if dialer && e.cfg.MultipathMode != nil {
			mode, all := e.cfg.MultipathMode(peer)
			if MultipathMode(mode) <= MultipathAggregate {
				mp.Mode, mp.RedundancyAll = uint8(mode), all
			} else {
				e.log.Warn("quicconn: unknown multipath mode, announcing failover", "peer", keyString(peer), "mode", mode.String())
			}
		}
		after = ctlmsg.Append(after, mp)
	}
	after = e.appendPreference(after, &h, dialer, peer)
	return append(ctlmsg.Append(nil, h), after...)
}

// readMultipath reads the Multipath message that must follow a Hello with
// CapMultipath. It returns what the Conn reports: ok when this side
// announces too. A dialer ignores the acceptor's mode.
func (e *Endpoint) readMultipath(br *bufio.Reader, dialer bool) (PeerMultipath, bool, error) {
	m, err := ctlmsg.Read(br)
	if err != nil {
		return PeerMultipath{}, false, err
	}
	mp, isMP := m.(ctlmsg.Multipath)
	if !isMP {
		return PeerMultipath{}, false, fmt.Errorf("%w: %T after a hello with the multipath capability, want multipath", ctlmsg.ErrMalformed, m)
	}
	if !e.cfg.Multipath {
		return PeerMultipath{}, false, nil
	}
	pm := PeerMultipath{Instance: mp.Instance}
	if !dialer {
		pm.Mode, pm.RedundancyAll = MultipathMode(mp.Mode), mp.RedundancyAll
	}
	return pm, true, nil
}
