// SPDX-License-Identifier: MIT

package netlab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// waitPingInterval is how often WaitPing sends an echo request.
const waitPingInterval = 100 * time.Millisecond

// PingResult is the outcome of [NS.Ping].
type PingResult struct {
	// Sent and Received count echo requests and matching replies.
	Sent, Received int
	// RTTs holds one round-trip time per reply, in arrival order.
	RTTs []time.Duration
}

// Ping sends count ICMP (or ICMPv6) echo requests to dst from inside the
// namespace, one every interval, and collects replies until timeout after
// the last request (or until every request was answered). Loss is not an
// error: check Received. It uses a raw socket, so it needs root but no
// ping binary, and it only counts replies carrying its own random
// identifier, so concurrent pings do not confuse each other.
func (n *NS) Ping(dst netip.Addr, count int, interval, timeout time.Duration) (PingResult, error) {
	if count <= 0 {
		return PingResult{}, errors.New("netlab: ping count must be positive")
	}
	end := time.Now().Add(time.Duration(count-1)*interval + timeout)
	return n.ping(dst, count, interval, end, count)
}

// WaitPing pings dst every 100 ms until one reply arrives (nil) or within
// has passed (an error).
func (n *NS) WaitPing(dst netip.Addr, within time.Duration) error {
	count := int(within/waitPingInterval) + 1
	r, err := n.ping(dst, count, waitPingInterval, time.Now().Add(within), 1)
	if err != nil {
		return err
	}
	if r.Received == 0 {
		return fmt.Errorf("netlab: no echo reply from %v in %s within %v (%d sent)", dst, n.Name, within, r.Sent)
	}
	return nil
}

// ping sends up to count requests, one per interval, and reads replies
// until end or until enough replies arrived.
func (n *NS) ping(dst netip.Addr, count int, interval time.Duration, end time.Time, enough int) (PingResult, error) {
	dst = dst.Unmap()
	network, laddr, proto := "ip4:icmp", "0.0.0.0", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, laddr, proto = "ip6:ipv6-icmp", "::", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var c *icmp.PacketConn
	if err := n.Do(func() (err error) {
		c, err = icmp.ListenPacket(network, laddr)
		return err
	}); err != nil {
		return PingResult{}, fmt.Errorf("netlab: ping socket in %s: %w", n.Name, err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(end); err != nil {
		return PingResult{}, fmt.Errorf("netlab: %w", err)
	}

	id := rand.IntN(0xffff) + 1
	to := &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	var (
		mu    sync.Mutex
		sent  = make(map[int]time.Time) // seq -> send time
		stop  = make(chan struct{})
		sendE = make(chan error, 1)
	)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for seq := range count {
			msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("godwit-netlab")}}
			b, err := msg.Marshal(nil)
			if err != nil {
				sendE <- err
				return
			}
			mu.Lock()
			sent[seq] = time.Now()
			mu.Unlock()
			// A send error (no route yet, for instance) counts as loss.
			_, _ = c.WriteTo(b, to)
			if seq == count-1 {
				break
			}
			select {
			case <-stop:
				sendE <- nil
				return
			case <-t.C:
			}
		}
		sendE <- nil
	}()

	var res PingResult
	seen := make(map[int]bool)
	buf := make([]byte, 1500)
	var rerr error
	for res.Received < enough {
		nr, peer, err := c.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				rerr = fmt.Errorf("netlab: ping read: %w", err)
			}
			break
		}
		now := time.Now()
		m, err := icmp.ParseMessage(proto, buf[:nr])
		if err != nil || m.Type != replyType {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || echo.ID != id || seen[echo.Seq] {
			continue
		}
		if pa, ok := peer.(*net.IPAddr); !ok || !ipEqual(pa.IP, dst) {
			continue
		}
		mu.Lock()
		at, ok := sent[echo.Seq]
		mu.Unlock()
		if !ok {
			continue
		}
		seen[echo.Seq] = true
		res.Received++
		res.RTTs = append(res.RTTs, now.Sub(at))
	}
	close(stop)
	if err := <-sendE; err != nil && rerr == nil {
		rerr = fmt.Errorf("netlab: ping: %w", err)
	}
	mu.Lock()
	res.Sent = len(sent)
	mu.Unlock()
	return res, rerr
}

func ipEqual(ip net.IP, a netip.Addr) bool {
	b, ok := netip.AddrFromSlice(ip)
	return ok && b.Unmap() == a
}
