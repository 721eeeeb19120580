// SPDX-License-Identifier: MIT

package tcppath

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// TestNoMigrationBetweenUDPAndTCP documents what the package doc says of
// moving one QUIC connection between a UDP path and a TCP path: the hub
// has a Transport for each, and the one on the Listener does not know the
// connection, so the probe goes unanswered.
func TestNoMigrationBetweenUDPAndTCP(t *testing.T) {
	site := newIdentity(t)
	h := newHub(t, ServerConfig{}, site.pub)
	srvTLS, cliTLS := quicTLS(t)
	var resetKey quic.StatelessResetKey
	resetKey[0] = 1

	// The hub: a UDP Transport and a TCP one, sharing what the doc says
	// they share.
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	hubUDP := &quic.Transport{Conn: udp, ConnectionIDLength: 8, StatelessResetKey: &resetKey}
	hubTCP := &quic.Transport{Conn: h, ConnectionIDLength: 8, StatelessResetKey: &resetKey}
	t.Cleanup(func() { hubUDP.Close(); hubTCP.Close() })
	for _, tr := range []*quic.Transport{hubUDP, hubTCP} {
		ln, err := tr.Listen(srvTLS, quicConfig())
		if err != nil {
			t.Fatal(err)
		}
		go echoQUIC(ln)
	}

	// The site: connected over UDP, then a TCP path added and probed.
	sudp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sudp.Close() })
	siteUDP := &quic.Transport{Conn: sudp, ConnectionIDLength: 8}
	t.Cleanup(func() { siteUDP.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := siteUDP.Dial(ctx, udp.LocalAddr(), cliTLS, quicConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	s := &quicSite{conn: conn}
	s.echoDatagram(t, []byte{0x45, 1})

	pc := h.dial(t, site)
	siteTCP := &quic.Transport{Conn: pc, ConnectionIDLength: 8}
	t.Cleanup(func() { siteTCP.Close() })
	path, err := conn.AddPath(siteTCP)
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer pcancel()
	if err := path.Probe(pctx); err == nil {
		t.Fatal("a UDP connection validated a TCP path: the package doc is wrong")
	} else {
		t.Logf("Probe over TCP: %v", err)
	}
	// The connection is unharmed, on UDP.
	s.echoDatagram(t, []byte{0x45, 2})
}
