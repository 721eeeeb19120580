// SPDX-License-Identifier: MIT

package tcppath

import (
	"testing"
	"time"
)

// TestAllocs gates the per-packet path: a packet from the site's WriteTo
// to the hub's ReadFrom and back (pooled buffers, the framing, the
// queues, crypto/tls) allocates only inside crypto/tls.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	site := newIdentity(t)
	h := newHub(t, ServerConfig{}, site.pub)
	c := h.dial(t, site)
	from := h.register(t, c)
	to := c.RemoteAddr()
	p := make([]byte, 1200)
	b := make([]byte, DefaultMaxPacket)
	h.SetReadDeadline(time.Now().Add(time.Minute))
	c.SetReadDeadline(time.Now().Add(time.Minute))
	roundTrip := func() {
		if _, err := c.WriteTo(p, to); err != nil {
			t.Fatal(err)
		}
		if _, _, err := h.ReadFrom(b); err != nil {
			t.Fatal(err)
		}
		if _, err := h.WriteTo(p, from); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadFrom(b); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		roundTrip() // warm the pools and crypto/tls's buffers
	}
	// crypto/tls allocates once per record it reads (an atLeastReader
	// passed to bytes.Buffer.ReadFrom escapes), and here every packet is
	// a record of its own; this package adds nothing.
	if n := testing.AllocsPerRun(1000, roundTrip); n > 2 {
		t.Errorf("%v allocations per round trip, want at most 2 (crypto/tls's, one per record read)", n)
	}
}
