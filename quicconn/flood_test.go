// SPDX-License-Identifier: MIT

package quicconn

import (
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/quicconn/internal/ctlmsg"
	"github.com/godwit-vpn/godwit/quicconn/quictest/flight"

	"github.com/quic-go/quic-go"
)

// TestHalfOpenFloodRetry (S9 in small) leaves the listener with more than
// retryAbove half-open handshakes (first flights that never continue),
// then checks that a legitimate client still connects at once, through a
// Retry, that the half-open ones are dropped after HandshakeTimeout, and
// that the whole flood logs a handful of lines.
func TestHalfOpenFloodRetry(t *testing.T) {
	const flood = 2 * retryAbove
	h := &logRecorder{}
	p := newTestPair(t, func(_, srv *Config) {
		srv.HandshakeTimeout = 2 * time.Second
		srv.Logger = slog.New(h)
	})
	m := flight.NewMaker(alpn, 0)
	defer m.Close()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	to := p.srv.LocalAddr().(*net.UDPAddr)
	for range flood {
		dgrams, err := m.Next()
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range dgrams {
			if _, err := pc.WriteToUDP(b, to); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !waitFor(2*time.Second, func() bool { return p.srv.Stats().HandshakesPending > retryAbove }) {
		t.Fatalf("pending handshakes = %d after %d half-open ones, want > %d", p.srv.Stats().HandshakesPending, flood, retryAbove)
	}
	before := p.srv.Stats()
	start := time.Now()
	c, _ := p.connect(t)
	took := time.Since(start)
	c.Close("test")
	st := p.srv.Stats()
	t.Logf("%d half-open: pending %d, retries %d; a good client connected in %v (retries then %d)",
		flood, before.HandshakesPending, before.RetriesSent, took.Round(time.Millisecond), st.RetriesSent)
	if st.RetriesSent == 0 {
		t.Error("no Retry sent above the threshold")
	}
	if took > time.Second {
		t.Errorf("good client connected after %v, want < 1 s", took)
	}
	if !waitFor(5*time.Second, func() bool { return p.srv.Stats().HandshakesPending == 0 }) {
		t.Errorf("pending handshakes = %d 5 s after the flood, want 0", p.srv.Stats().HandshakesPending)
	}
	st = p.srv.Stats()
	if st.HandshakesAbandoned < retryAbove {
		t.Errorf("HandshakesAbandoned = %d, want >= %d", st.HandshakesAbandoned, retryAbove)
	}
	p.srv.flood.log.close() // writes the pending summary now
	lines := h.countIf(func(rec map[string]string) bool { return true })
	summaries := h.count("quicconn: incoming handshakes refused or abandoned (summary; see godwit show)")
	t.Logf("abandoned %d; %d log lines, %d of them summaries", st.HandshakesAbandoned, lines, summaries)
	if summaries != 1 || h.count("quicconn: incoming handshake not completed") > refusalDetail {
		t.Errorf("logged %d summaries and %d single lines, want 1 and at most %d", summaries,
			h.count("quicconn: incoming handshake not completed"), refusalDetail)
	}
}

// TestRefusalLogFreshKeys checks that fresh unknown keys, each logged
// once a minute at most, are also bounded together: refusalDetail lines,
// then one summary with the count of the rest.
func TestRefusalLogFreshKeys(t *testing.T) {
	h := &logRecorder{}
	e := newEndpoint(t, Config{PrivateKey: newKey(t).priv, Logger: slog.New(h)})
	const n = 1000
	for range n {
		e.logRefused(newKey(t).pub)
	}
	e.flood.log.close()
	const msg = "quicconn: refused a peer whose key is not configured"
	if got := h.count(msg); got != refusalDetail {
		t.Errorf("%q logged %d times for %d fresh keys, want %d", msg, got, n, refusalDetail)
	}
	const sum = "quicconn: incoming handshakes refused or abandoned (summary; see godwit show)"
	if got := h.find(sum, reasonUnknownKey, "995"); got != 1 {
		t.Errorf("summary with unknown_key=995 logged %d times, want 1; log: %v", got, h.recs)
	}
	if got := e.Stats().RefusedKeys; got != n {
		t.Errorf("RefusedKeys = %d, want %d", got, n)
	}
}

// floodControl writes n copies of m on c's control stream as fast as the
// stream takes them, and reports how many it wrote before the conn died.
func floodControl(c *Conn, m ctlmsg.Message, n int) int {
	one := ctlmsg.Append(nil, m)
	batch := make([]byte, 0, 100*len(one))
	for range 100 {
		batch = append(batch, one...)
	}
	sent := 0
	for sent < n {
		c.ctl.mu.Lock()
		err := c.ctl.st.TryWriteAll(batch)
		c.ctl.mu.Unlock()
		switch {
		case err == nil:
			sent += 100
		case errors.Is(err, quic.ErrWouldBlock):
			time.Sleep(time.Millisecond)
		default:
			return sent
		}
	}
	return sent
}

// TestControlFloodClosed (issue 15 item 7): an authenticated peer that
// floods the control stream with tiny messages is closed with
// CodeProtocolError and counted.
func TestControlFloodClosed(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	start := time.Now()
	sent := floodControl(c, ctlmsg.Heartbeat{Seq: 1, Reply: true}, 1_000_000)
	waitDone(t, s, 5*time.Second)
	var ce *closeError
	if err := s.Err(); !errors.As(err, &ce) || ce.Remote || ce.Code != ctlmsg.CodeProtocolError || ce.Reason != "control message flood" {
		t.Errorf("hub Err() = %v, want a local close with code %d, \"control message flood\"", err, ctlmsg.CodeProtocolError)
	}
	waitDone(t, c, 5*time.Second)
	if err := c.Err(); !errors.As(err, &ce) || !ce.Remote || ce.Code != ctlmsg.CodeProtocolError {
		t.Errorf("flooder Err() = %v, want a remote close with code %d", err, ctlmsg.CodeProtocolError)
	}
	if got := p.srv.Stats().ControlFloods; got != 1 {
		t.Errorf("ControlFloods = %d, want 1", got)
	}
	t.Logf("flooder wrote %d messages; closed after %v", sent, time.Since(start).Round(time.Millisecond))
}

// TestControlNormalRateKept checks that a peer at the busiest normal rate,
// heartbeats every 50 ms both ways (five times faster than a monitored
// path's) and a preference change 20 times a second, plus a burst of 500
// messages, is never closed.
func TestControlNormalRateKept(t *testing.T) {
	p := newTestPair(t, func(cli, srv *Config) {
		cli.Heartbeat = 50 * time.Millisecond
		srv.Heartbeat = 50 * time.Millisecond
	})
	c, s := p.connect(t)
	floodControl(c, ctlmsg.Heartbeat{Seq: 1, Reply: true}, 500)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := range 60 {
		<-tick.C
		_ = c.SetPreferred(i%2 == 0)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("hub closed a normal peer: %v", err)
	}
	if got := p.srv.Stats().ControlFloods; got != 0 {
		t.Errorf("ControlFloods = %d, want 0", got)
	}
	exchange(t, c, s, []byte{0x45, 1})
}
