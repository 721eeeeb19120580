// SPDX-License-Identifier: MIT

package state

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/godwit-vpn/godwit/config/key"
)

// A listener makes its 0-RTT-capable session tickets single-use: each
// carries a [Ticket] (an ID, the TicketBook's boot ID and the client's key)
// in its tls.SessionState.Extra, encrypted with the ticket keys, and the
// TicketBook books the ID as issued to that key. The first redemption of a
// booked ID may carry 0-RTT data; any other (a replayed first flight, a
// client reusing an old ticket, a ticket issued before this process
// started, whose ID the restarted process never booked) may not. The book
// lives in memory only, on purpose: after a restart every old ticket
// resumes without 0-RTT.
//
// The book keeps at most maxTicketsPerPeer IDs per client key (a client
// always holds the newest; older ones are dropped first) and at most
// maxTicketPeers keys, so memory is bounded whatever clients do; IDs need
// no expiry because crypto/tls refuses tickets older than 7 days anyway.

const (
	// ticketPrefix marks Godwit's entry in tls.SessionState.Extra
	// (quic-go keeps its own entry there with another prefix).
	ticketPrefix      = "godwit-ticket1\x00"
	ticketLen         = len(ticketPrefix) + 16 + 8 + 32 // id, boot, peer key
	maxTicketsPerPeer = 4
	maxTicketPeers    = 16384
)

// Ticket is Godwit's entry in a session ticket.
type Ticket struct {
	id   [16]byte
	boot [8]byte    // the issuing TicketBook's boot ID
	Peer key.Public // the client the ticket was issued to
}

// Append appends t's encoding, an element of tls.SessionState.Extra, to b.
func (t Ticket) Append(b []byte) []byte {
	b = append(b, ticketPrefix...)
	b = append(b, t.id[:]...)
	b = append(b, t.boot[:]...)
	return append(b, t.Peer[:]...)
}

// FindTicket returns Godwit's entry among a ticket's extras
// (tls.SessionState.Extra), and false if it has none.
func FindTicket(extras [][]byte) (Ticket, bool) {
	for _, e := range extras {
		b, ok := bytes.CutPrefix(e, []byte(ticketPrefix))
		if !ok || len(e) != ticketLen {
			continue
		}
		var t Ticket
		copy(t.id[:], b)
		copy(t.boot[:], b[16:])
		copy(t.Peer[:], b[24:])
		return t, true
	}
	return Ticket{}, false
}

// ErrTicketRestart is what [TicketBook.Redeem] returns for a ticket that
// another TicketBook issued, in practice this process before a restart.
var ErrTicketRestart = errors.New("ticket issued before this process started")

// errTicketUsed is what Redeem returns for a ticket that was redeemed
// before (a replay, or a client reusing a ticket) or dropped from the book.
var errTicketUsed = errors.New("ticket already used")

// TicketBook remembers the 0-RTT ticket IDs issued and not yet redeemed.
// It is safe for concurrent use.
type TicketBook struct {
	boot [8]byte // random per book: tickets of an earlier process differ

	mu     sync.Mutex // mu guards the following field.
	issued map[key.Public][][16]byte
}

// NewTicketBook returns an empty book with a fresh boot ID.
func NewTicketBook() (*TicketBook, error) {
	b := &TicketBook{issued: make(map[key.Public][][16]byte)}
	if _, err := rand.Read(b.boot[:]); err != nil {
		return nil, fmt.Errorf("quicconn: boot id: %w", err)
	}
	return b, nil
}

// Issue books a new ticket for peer.
func (b *TicketBook) Issue(peer key.Public) (Ticket, error) {
	t := Ticket{boot: b.boot, Peer: peer}
	if _, err := rand.Read(t.id[:]); err != nil {
		return Ticket{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ids, ok := b.issued[peer]
	if !ok && len(b.issued) >= maxTicketPeers {
		for k := range b.issued { // drop an arbitrary peer: it loses 0-RTT once
			delete(b.issued, k)
			break
		}
	}
	if len(ids) >= maxTicketsPerPeer {
		ids = slices.Delete(ids, 0, 1)
	}
	b.issued[peer] = append(ids, t.id)
	return t, nil
}

// Redeem unbooks t and reports whether it may carry 0-RTT data: nil the
// first time for a ticket this book issued, ErrTicketRestart for one
// another book issued, and another error for one already redeemed (a
// replay) or dropped from the book.
func (b *TicketBook) Redeem(t Ticket) error {
	if t.boot != b.boot {
		return ErrTicketRestart
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ids := b.issued[t.Peer]
	i := slices.Index(ids, t.id)
	if i < 0 {
		return errTicketUsed
	}
	ids = slices.Delete(ids, i, i+1)
	if len(ids) == 0 {
		delete(b.issued, t.Peer)
	} else {
		b.issued[t.Peer] = ids
	}
	return nil
}
