// SPDX-License-Identifier: MIT

package tunnel

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/godwit-vpn/godwit/tun/tuntest"
)

// withTTL returns a copy of the IP packet pkt with TTL (IPv4, header
// checksum recomputed) or hop limit (IPv6) ttl.
func withTTL(pkt []byte, ttl byte) []byte {
	b := bytes.Clone(pkt)
	if b[0]>>4 == 6 {
		b[7] = ttl
		return b
	}
	b[8] = ttl
	b[10], b[11] = 0, 0
	c := checksum(b[:ipv4HeaderLen], 0)
	b[10], b[11] = byte(c>>8), byte(c)
	return b
}

func TestDecrementTTL(t *testing.T) {
	for _, ttl := range []byte{2, 3, 64, 128, 255} {
		for _, pkt := range [][]byte{
			tuntest.Ping(hostB4, hostA4, 1, 1, 56),
			tuntest.UDP(netip.MustParseAddrPort("198.51.100.7:53"), netip.MustParseAddrPort("203.0.113.200:9"), []byte("x")),
			tuntest.Ping(hostB6, hostA6, 1, 1, 56),
		} {
			in := withTTL(pkt, ttl)
			if !ttlLeft(in) {
				t.Fatalf("ttlLeft(TTL %d) = false", ttl)
			}
			got := bytes.Clone(in)
			decrementTTL(got)
			if want := withTTL(pkt, ttl-1); !bytes.Equal(got, want) {
				t.Errorf("decrementTTL(TTL %d) =\n% x\nwant (checksum recomputed)\n% x", ttl, got, want)
			}
		}
	}
	for _, ttl := range []byte{0, 1} {
		if ttlLeft(withTTL(tuntest.Ping(hostB4, hostA4, 1, 1, 56), ttl)) || ttlLeft(withTTL(tuntest.Ping(hostB6, hostA6, 1, 1, 56), ttl)) {
			t.Errorf("ttlLeft(TTL %d) = true, want false", ttl)
		}
	}
}

// TestTTL is scenario S6 (c) on the tunnel: peer B sends packets with
// TTL (hop limit) 64, 2, 1 and 0. The tunnel is a router hop: 64 arrives
// as 63 and 2 as 1; 1 and 0 are not delivered, counted as ttl_expired,
// and answered with an ICMP time exceeded from this node's tunnel
// address, sent back to B.
func TestTTL(t *testing.T) {
	h := newHarness(t)
	ta, devA := h.tunnel(Config{Addresses: []netip.Prefix{ownA4, ownA6}}, 4,
		PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4, prefB6}})
	_, c2 := h.attachPipe(ta, idB)
	var expired uint64
	for _, v := range []struct {
		name string
		pkt  []byte
		own  netip.Addr
		typ  byte // of the time exceeded
	}{
		{"v4", tuntest.Ping(hostB4, hostA4, 9, 1, 56), ownA4.Addr(), 11},
		{"v6", tuntest.Ping(hostB6, hostA6, 9, 1, 56), ownA6.Addr(), 3},
	} {
		t.Run(v.name, func(t *testing.T) {
			for _, ttl := range []byte{64, 2} {
				if err := c2.SendDatagram(withTTL(v.pkt, ttl)); err != nil {
					t.Fatal(err)
				}
				expectPacket(t, devA.FromTunnel, withTTL(v.pkt, ttl)) // as forwarded: ttl-1
			}
			for _, ttl := range []byte{1, 0} {
				sent := withTTL(v.pkt, ttl)
				if err := c2.SendDatagram(sent); err != nil {
					t.Fatal(err)
				}
				expired++
				eventually(t, "ttl_expired count", func() bool { return ta.Stats().Peers[idB].Drops.TTLExpired == expired })
				e, err := parseICMPError(receive(t, c2))
				if err != nil {
					t.Fatalf("TTL %d: answer to B: %v", ttl, err)
				}
				if e.typ != v.typ || e.code != 0 || e.src != v.own || e.dst != srcAddr(sent) {
					t.Errorf("TTL %d: answer type/code %d/%d %v -> %v, want time exceeded %d/0 %v -> %v", ttl, e.typ, e.code, e.src, e.dst, v.typ, v.own, srcAddr(sent))
				}
				if !bytes.Equal(e.quote, sent[:len(e.quote)]) {
					t.Errorf("TTL %d: the time exceeded does not quote the packet", ttl)
				}
			}
			expectNothing(t, devA.FromTunnel)
		})
	}
}
