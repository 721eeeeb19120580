// SPDX-License-Identifier: MIT

package tuntest

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"
)

func TestPingAndUDPChecksums(t *testing.T) {
	tests := []struct {
		name  string
		pkt   []byte
		proto byte
		len   int
	}{
		{"ping4", Ping(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), 7, 9, 33), 1, 20 + 8 + 33},
		{"ping6", Ping(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 7, 9, 33), 58, 40 + 8 + 33},
		{"udp4", UDP(netip.MustParseAddrPort("192.0.2.1:1000"), netip.MustParseAddrPort("192.0.2.2:2000"), []byte("hello")), 17, 20 + 8 + 5},
		{"udp6", UDP(netip.MustParseAddrPort("[2001:db8::1]:1000"), netip.MustParseAddrPort("[2001:db8::2]:2000"), []byte("hello")), 17, 40 + 8 + 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.pkt
			if len(p) != tt.len {
				t.Fatalf("len = %d, want %d", len(p), tt.len)
			}
			var src, dst netip.Addr
			var l4 []byte
			var proto byte
			switch p[0] >> 4 {
			case 4:
				if got := Checksum(p[:20], 0); got != 0 {
					t.Errorf("IPv4 header checksum verifies to %#x, want 0", got)
				}
				if got := int(binary.BigEndian.Uint16(p[2:])); got != len(p) {
					t.Errorf("total length = %d, want %d", got, len(p))
				}
				src, dst, proto, l4 = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20])), p[9], p[20:]
			case 6:
				if got := int(binary.BigEndian.Uint16(p[4:])) + 40; got != len(p) {
					t.Errorf("payload length + 40 = %d, want %d", got, len(p))
				}
				src, dst, proto, l4 = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40])), p[6], p[40:]
			default:
				t.Fatalf("version %d", p[0]>>4)
			}
			if proto != tt.proto {
				t.Errorf("protocol = %d, want %d", proto, tt.proto)
			}
			var sum uint32
			if proto != 1 {
				sum = PseudoHeaderSum(src, dst, proto, len(l4))
			}
			if got := Checksum(l4, sum); got != 0 {
				t.Errorf("transport checksum verifies to %#x, want 0", got)
			}
		})
	}
}

func TestChannelReadWrite(t *testing.T) {
	c := NewChannel(4)
	pkts := [][]byte{{0x45, 1}, {0x45, 2}, {0x45, 3}, {0x45, 4}, {0x45, 5}, {0x45, 6}}
	for _, p := range pkts {
		c.ToTunnel <- p
	}
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 100)
	}
	sizes := make([]int, 4)
	n, err := c.Read(bufs, sizes, 16)
	if err != nil || n != 4 {
		t.Fatalf("Read = %d, %v, want 4, nil", n, err)
	}
	for i := range n {
		if got := bufs[i][16 : 16+sizes[i]]; string(got) != string(pkts[i]) {
			t.Errorf("packet %d = %x, want %x", i, got, pkts[i])
		}
	}
	n, err = c.Read(bufs, sizes, 16)
	if err != nil || n != 2 {
		t.Fatalf("second Read = %d, %v, want 2, nil", n, err)
	}
	if _, err := c.Read(bufs, sizes, 4); err == nil {
		t.Errorf("Read with offset 4: got nil error, want one")
	}

	w := [][]byte{append(make([]byte, 16), 0x60, 9)}
	if n, err := c.Write(w, 16); err != nil || n != 1 {
		t.Fatalf("Write = %d, %v, want 1, nil", n, err)
	}
	w[0][16] = 0 // Write must have copied
	if got := <-c.FromTunnel; string(got) != string([]byte{0x60, 9}) {
		t.Errorf("written packet = %x, want 6009", got)
	}

	done := make(chan error)
	go func() {
		_, err := c.Read(bufs, sizes, 16)
		done <- err
	}()
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Read after Close = %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read not unblocked by Close")
	}
	if _, err := c.Write(w, 16); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close = %v, want os.ErrClosed", err)
	}
}
