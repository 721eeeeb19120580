// SPDX-License-Identifier: MIT

package quicconn

import (
	"bufio"
	"fmt"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/internal/ctlmsg"
)

// Preference: a site with several hubs (issue 13) tells each of them
// whether it sends its traffic through it, so that a hub that announces
// its sites' routes over BGP announces a site's only while the site uses
// it. A dialer with Config.Preference sets ctlmsg.CapPreference in its
// Hello and sends a Preference message right after it (and after its
// Multipath message); later changes follow as Preference messages
// ([Conn.SetPreferred]). A hub that shuts down sends one with Leaving
// ([Conn.Leave]), so that its sites move before it closes. An older peer
// skips these messages as unknown.

// Bits of Conn.peerPref.
const (
	prefAnnounced = 1 << iota // the peer sent a Preference
	prefPreferred             // its latest said Preferred
	prefLeaving               // its latest said Leaving
)

// PeerPreference is what the peer's latest Preference message said.
type PeerPreference struct {
	// Announced is false until the peer sent one (an older peer, or a
	// site without several hubs, never does).
	Announced bool
	// Preferred: the peer (a site) sends its traffic through this node.
	Preferred bool
	// Leaving: the peer (a hub) is shutting down.
	Leaving bool
}

// PeerPreference returns what the peer's latest Preference message said.
func (c *Conn) PeerPreference() PeerPreference {
	v := c.peerPref.Load()
	return PeerPreference{Announced: v&prefAnnounced != 0, Preferred: v&prefPreferred != 0, Leaving: v&prefLeaving != 0}
}

// setPeerPreference records m.
func (c *Conn) setPeerPreference(m ctlmsg.Preference) {
	v := uint32(prefAnnounced)
	if m.Preferred {
		v |= prefPreferred
	}
	if m.Leaving {
		v |= prefLeaving
	}
	c.peerPref.Store(v)
}

// SetPreferred tells the peer (a hub) whether this node sends its traffic
// through it. It does not block; on a connection whose control stream is
// not open yet (0-RTT) it fails, and the daemon sends it again once the
// hello is done. The Hello of a dialer with Config.Preference already
// carries the state at dial time.
func (c *Conn) SetPreferred(preferred bool) error {
	return c.writeMessage(ctlmsg.Preference{Preferred: preferred})
}

// Leave tells the peer that this node is shutting down, so that a site
// with another hub moves its traffic there before this one closes. It does
// not block.
func (c *Conn) Leave() error {
	return c.writeMessage(ctlmsg.Preference{Leaving: true})
}

// appendPreference appends, for a dialer with Config.Preference, the
// Preference message that follows its Hello, and sets the capability in
// h.
func (e *Endpoint) appendPreference(b []byte, h *ctlmsg.Hello, dialer bool, peer key.Public) []byte {
	if !dialer || e.cfg.Preference == nil {
		return b
	}
	h.Capabilities |= ctlmsg.CapPreference
	return ctlmsg.Append(b, ctlmsg.Preference{Preferred: e.cfg.Preference(peer)})
}

// readPreference reads the Preference message that must follow a Hello
// with CapPreference (after its Multipath message).
func readPreference(br *bufio.Reader) (ctlmsg.Preference, error) {
	m, err := ctlmsg.Read(br)
	if err != nil {
		return ctlmsg.Preference{}, err
	}
	p, ok := m.(ctlmsg.Preference)
	if !ok {
		return ctlmsg.Preference{}, fmt.Errorf("%w: %T after a hello with the preference capability, want preference", ctlmsg.ErrMalformed, m)
	}
	return p, nil
}
