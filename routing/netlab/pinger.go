// SPDX-License-Identifier: MIT

package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// The loss window of [Pinger.Outage], around a change at from seen up to to.
const (
	// outageInFlight: requests sent this long before from may be lost
	// with the change.
	outageInFlight = 200 * time.Millisecond
	// outageGrace: replies to requests sent this long before to may
	// still be on their way, so they are not counted as lost.
	outageGrace = 500 * time.Millisecond
)

// Pinger pings one address from a namespace without pause: an ICMP or
// ICMPv6 echo request every interval over a raw socket of its own (no ping
// binary), recording when each request left and each reply arrived, until
// [Pinger.Stop] or its time limit. What it recorded measures an outage:
// [Pinger.LongestGap] without a reply and [Pinger.Loss] of requests, both
// at once in [Pinger.Outage]. Its methods are safe for concurrent use.
type Pinger struct {
	e    *echoConn
	quit chan struct{}
	done chan struct{} // closed when the sender and reader have returned
	once sync.Once

	mu      sync.Mutex  // guards the following fields
	sent    []time.Time // by sequence number
	replies []echoReply // in arrival order, one per sequence number
}

// echoReply is one echo reply: the request's sequence number and when the
// reply arrived.
type echoReply struct {
	seq int
	at  time.Time
}

// StartPinger starts pinging dst from the namespace at once, one request
// every interval. It stops by itself after limit, so that a Pinger whose
// Stop is never reached cannot run on.
func (n *NS) StartPinger(dst netip.Addr, interval, limit time.Duration) (*Pinger, error) {
	e, err := n.listenEcho(dst)
	if err != nil {
		return nil, err
	}
	end := time.Now().Add(limit)
	_ = e.SetReadDeadline(end.Add(time.Second))
	p := &Pinger{e: e, quit: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { p.send(interval, end) })
	wg.Go(p.read)
	go func() {
		wg.Wait()
		close(p.done)
	}()
	return p, nil
}

// send sends a request every interval until end or Stop.
func (p *Pinger) send(interval time.Duration, end time.Time) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for seq := 0; time.Now().Before(end); seq++ {
		b, err := p.e.request(seq)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.sent = append(p.sent, time.Now())
		p.mu.Unlock()
		p.e.send(b)
		select {
		case <-p.quit:
			return
		case <-t.C:
		}
	}
}

// read records the replies until the socket is closed by Stop or reaches
// its deadline.
func (p *Pinger) read() {
	buf := make([]byte, 1500)
	seen := make(map[int]bool)
	for {
		seq, at, err := p.e.readReply(buf)
		if err != nil {
			return
		}
		if seen[seq] {
			continue
		}
		seen[seq] = true
		p.mu.Lock()
		if seq < len(p.sent) {
			p.replies = append(p.replies, echoReply{seq, at})
		}
		p.mu.Unlock()
	}
}

// Stop ends the pinger and waits for its goroutines. It may be called more
// than once.
func (p *Pinger) Stop() {
	p.once.Do(func() {
		close(p.quit)
		p.e.Close()
	})
	<-p.done
}

// Received returns the number of replies so far.
func (p *Pinger) Received() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.replies)
}

// ReplyAfter waits up to within for a reply that arrived after t and
// returns the arrival time of the first one.
func (p *Pinger) ReplyAfter(ctx context.Context, t time.Time, within time.Duration) (time.Time, error) {
	end := time.Now().Add(within)
	for {
		p.mu.Lock()
		var at time.Time
		if n := len(p.replies); n > 0 && p.replies[n-1].at.After(t) {
			at = p.replies[n-1].at
			for i := n - 1; i >= 0 && p.replies[i].at.After(t); i-- {
				at = p.replies[i].at
			}
		}
		p.mu.Unlock()
		switch {
		case !at.IsZero():
			return at, nil
		case ctx.Err() != nil:
			return time.Time{}, ctx.Err()
		case time.Now().After(end):
			return time.Time{}, fmt.Errorf("netlab: no echo reply from %v within %v", p.e.dst, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// LongestGap returns the longest time without a reply within [from, to]:
// between consecutive replies, from the last reply at or before from (else
// from itself) to the first one after it, and from the last reply to to.
// It is to-from when no reply arrived in the window.
func (p *Pinger) LongestGap(from, to time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	at := make([]time.Time, len(p.replies))
	for i, r := range p.replies {
		at[i] = r.at
	}
	return longestGap(at, from, to)
}

// Loss counts the requests sent within [from, to] and those of them not
// answered so far.
func (p *Pinger) Loss(from, to time.Time) (lost, sent int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	answered := make(map[int]bool, len(p.replies))
	for _, r := range p.replies {
		answered[r.seq] = true
	}
	return pingLoss(p.sent, answered, from, to)
}

// Outage measures the outage of a change made at from, seen up to to: the
// longest gap between replies that ends after from (counted from the last
// reply before from) and up to to, and how many of the requests sent from
// 200 ms before from (those in flight when the change came) until 500 ms
// before to (later ones may still be answered) went unanswered.
func (p *Pinger) Outage(from, to time.Time) (gap time.Duration, lost, sent int) {
	lost, sent = p.Loss(from.Add(-outageInFlight), to.Add(-outageGrace))
	return p.LongestGap(from, to), lost, sent
}

// longestGap is [Pinger.LongestGap] over reply arrival times in ascending
// order.
func longestGap(at []time.Time, from, to time.Time) time.Duration {
	prev := from
	var gap time.Duration
	for _, t := range at {
		if t.After(to) {
			break
		}
		if !t.After(from) {
			prev = t
			continue
		}
		gap = max(gap, t.Sub(prev))
		prev = t
	}
	return max(gap, to.Sub(prev))
}

// pingLoss counts the requests (send times by sequence number) sent within
// [from, to] and those of them not answered.
func pingLoss(sentAt []time.Time, answered map[int]bool, from, to time.Time) (lost, sent int) {
	for seq, t := range sentAt {
		if t.Before(from) || t.After(to) {
			continue
		}
		sent++
		if !answered[seq] {
			lost++
		}
	}
	return lost, sent
}
