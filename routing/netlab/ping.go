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
	e, err := n.listenEcho(dst)
	if err != nil {
		return PingResult{}, err
	}
	defer e.Close()
	if err := e.SetReadDeadline(end); err != nil {
		return PingResult{}, fmt.Errorf("netlab: %w", err)
	}

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
			b, err := e.request(seq)
			if err != nil {
				sendE <- err
				return
			}
			mu.Lock()
			sent[seq] = time.Now()
			mu.Unlock()
			e.send(b)
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
		seq, now, err := e.readReply(buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				rerr = fmt.Errorf("netlab: ping read: %w", err)
			}
			break
		}
		mu.Lock()
		at, ok := sent[seq]
		mu.Unlock()
		if !ok || seen[seq] {
			continue
		}
		seen[seq] = true
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

// echoConn is a raw socket for ICMP (IPv4) or ICMPv6 echo requests to one
// address, from inside a namespace. Its requests carry a random identifier
// of its own, and it only reads the replies that carry it, so concurrent
// pings do not confuse each other.
type echoConn struct {
	*icmp.PacketConn
	dst                netip.Addr
	to                 *net.IPAddr
	id, proto          int
	reqType, replyType icmp.Type
}

// listenEcho opens an echo socket to dst inside the namespace.
func (n *NS) listenEcho(dst netip.Addr) (*echoConn, error) {
	dst = dst.Unmap()
	e := &echoConn{dst: dst, to: &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}, id: rand.IntN(0xffff) + 1,
		proto: 1, reqType: ipv4.ICMPTypeEcho, replyType: ipv4.ICMPTypeEchoReply}
	network, laddr := "ip4:icmp", "0.0.0.0"
	if dst.Is6() {
		network, laddr = "ip6:ipv6-icmp", "::"
		e.proto, e.reqType, e.replyType = 58, ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	c, err := open(n, func() (*icmp.PacketConn, error) { return icmp.ListenPacket(network, laddr) })
	if err != nil {
		return nil, fmt.Errorf("netlab: ping socket in %s: %w", n.Name, err)
	}
	e.PacketConn = c
	return e, nil
}

// request returns echo request seq, ready for send.
func (e *echoConn) request(seq int) ([]byte, error) {
	m := icmp.Message{Type: e.reqType, Body: &icmp.Echo{ID: e.id, Seq: seq, Data: []byte("godwit-netlab")}}
	return m.Marshal(nil)
}

// send sends a request. A send error (no route yet, for instance) counts as
// loss, so it is not returned.
func (e *echoConn) send(b []byte) { _, _ = e.WriteTo(b, e.to) }

// readReply waits for the next echo reply from dst to one of e's requests
// and returns the request's sequence number and when the reply arrived.
func (e *echoConn) readReply(buf []byte) (seq int, at time.Time, err error) {
	for {
		n, peer, err := e.ReadFrom(buf)
		if err != nil {
			return 0, time.Time{}, err
		}
		at := time.Now()
		m, err := icmp.ParseMessage(e.proto, buf[:n])
		if err != nil || m.Type != e.replyType {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || echo.ID != e.id {
			continue
		}
		if pa, ok := peer.(*net.IPAddr); !ok || !ipEqual(pa.IP, e.dst) {
			continue
		}
		return echo.Seq, at, nil
	}
}

func ipEqual(ip net.IP, a netip.Addr) bool {
	b, ok := netip.AddrFromSlice(ip)
	return ok && b.Unmap() == a
}
