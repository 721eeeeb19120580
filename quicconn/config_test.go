// SPDX-License-Identifier: MIT

package quicconn

import (
	"errors"
	"testing"
)

func TestInitialPacketSizeFor(t *testing.T) {
	for _, tt := range []struct{ mtu, want int }{
		{576, 1350},  // the default floor
		{1300, 1350}, // the default MTU fits the default packet size
		{1313, 1350}, // exactly the default limit
		{1314, 1351},
		{1400, 1437},
		{1415, 1452}, // the largest that fits
		{1500, 1452}, // clamped: larger inner packets get ICMP too big
	} {
		if got := InitialPacketSizeFor(tt.mtu); got != tt.want {
			t.Errorf("InitialPacketSizeFor(%d) = %d, want %d", tt.mtu, got, tt.want)
		}
	}
}

// TestInitialPacketSizeSetsFirstLimit: with InitialPacketSize 1452 the very
// first datagram of a connection may carry 1415 bytes, with no wait for
// path MTU discovery.
func TestInitialPacketSizeSetsFirstLimit(t *testing.T) {
	p := newTestPair(t, func(cli, srv *Config) {
		cli.InitialPacketSize, srv.InitialPacketSize = 1452, 1452
	})
	c, s := p.connect(t)
	var tl *DatagramTooLargeError
	if err := c.SendDatagram(make([]byte, 1416)); !errors.As(err, &tl) || tl.Limit != 1452-DatagramOverhead {
		t.Fatalf("SendDatagram(1416 bytes) = %v, want *DatagramTooLargeError with Limit %d", err, 1452-DatagramOverhead)
	}
	exchange(t, c, s, make([]byte, 1452-DatagramOverhead))
	exchange(t, s, c, make([]byte, 1452-DatagramOverhead))
}
