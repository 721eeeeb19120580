// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godwit-vpn/godwit/tests/bench/measure"
)

// tcpResult is one throughput measurement.
type tcpResult struct {
	// Row is the -rows key of the run: "tcp4", "loss1", "tcp1-cpu1".
	Row        string  `json:"row"`
	Streams    int     `json:"streams"`
	Bytes      uint64  `json:"bytes"`        // received by the sink during the measured interval
	Seconds    float64 `json:"seconds"`      // length of the measured interval
	Mbps       float64 `json:"mbit_per_s"`   // Bytes*8/Seconds/1e6
	CPUSeconds float64 `json:"daemon_cpu_s"` // utime+stime of both daemons during the interval
	CPUPerGB   float64 `json:"daemon_cpu_s_per_gb"`
	// Impairment is the -rows key of the underlay fault during the run
	// ("loss1", "tbf100"), or "" for none.
	Impairment string `json:"impairment,omitempty"`
	// UnderlayDropPct is the share of the tunnel's UDP packets the loss
	// rule dropped over the whole run (warm-up included), from its nft
	// counters; nil without a loss rule.
	UnderlayDropPct *float64 `json:"underlay_drop_pct,omitempty"`
	// HubCPUs is how many CPUs the hub daemon was pinned to (tcpN-cpuC
	// rows), or 0.
	HubCPUs int `json:"hub_cpus,omitempty"`
	// Retransmits is the sending namespace's TCP RetransSegs during the
	// interval: the inner TCP's retransmissions (the daemons speak UDP).
	Retransmits  uint64  `json:"inner_tcp_retransmits"`
	RetransPerGB float64 `json:"inner_tcp_retransmits_per_gb"`
	// Drops are the drop counters inside the daemons (see dropRcvbuf)
	// that grew during the interval, by "<daemon> <source>/<reason>";
	// DropsPerGB is their sum per 1e9 bytes received, without those that
	// are not tunnel traffic (see inTotal).
	Drops      map[string]uint64 `json:"daemon_drops,omitempty"`
	DropsPerGB float64           `json:"daemon_drops_per_gb"`
}

// perGB returns n per 1e9 of the result's bytes (Bytes > 0).
func (r *tcpResult) perGB(n uint64) float64 { return float64(n) / (float64(r.Bytes) / 1e9) }

// sink accepts TCP connections and counts every byte it reads. Its counter
// may be read at any time from any goroutine.
type sink struct {
	ln    net.Listener
	bytes atomic.Uint64
	wg    sync.WaitGroup

	// mu guards the following fields.
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

// newSink starts accepting on ln; it owns ln from now on.
func newSink(ln net.Listener) *sink {
	s := &sink{ln: ln}
	s.wg.Go(s.accept)
	return s
}

func (s *sink) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Go(func() { s.read(c) })
	}
}

func (s *sink) read(c net.Conn) {
	buf := make([]byte, 256<<10)
	for {
		n, err := c.Read(buf)
		s.bytes.Add(uint64(n))
		if err != nil {
			return
		}
	}
}

// accepted reports how many connections the sink has accepted so far.
func (s *sink) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// close stops the sink, closes its connections and waits for its goroutines.
func (s *sink) close() {
	s.mu.Lock()
	s.closed = true
	s.ln.Close()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// tcpParams describes one throughput measurement.
type tcpParams struct {
	streams int
	warmup  time.Duration // sending before the measured interval starts
	dur     time.Duration // the measured interval
	// listen makes the receiving socket (in the receiver's namespace).
	listen func() (net.Listener, error)
	// dial connects one stream to the listener (in the sender's namespace).
	dial func(ctx context.Context, addr net.Addr) (net.Conn, error)
	// cpu returns the CPU seconds used so far by the processes under test.
	cpu func() (float64, error)
	// counters, if not nil, reads the retransmission and drop counters.
	counters func(context.Context) (snapshot, error)
	// during, if not nil, runs on its own goroutine from the start of the
	// measured interval; the streams keep sending until it returns, also
	// when that is after the interval. It must return soon once ctx is
	// done. Its error does not fail the measurement.
	during func(ctx context.Context)
}

// measureTCP runs p.streams bulk TCP streams from dial to listen for
// p.warmup+p.dur and reports what the receiver got during p.dur. Everything it
// opens is closed before it returns.
func measureTCP(ctx context.Context, p tcpParams) (tcpResult, error) {
	res := tcpResult{Streams: p.streams}
	ln, err := p.listen()
	if err != nil {
		return res, fmt.Errorf("bench: listen: %w", err)
	}
	s := newSink(ln)
	defer s.close()

	// Senders stop by themselves at the deadline even if nobody closes them.
	deadline := time.Now().Add(p.warmup + p.dur + 15*time.Second)
	var (
		wg    sync.WaitGroup
		conns []net.Conn
	)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for range p.streams {
		c, err := p.dial(dctx, ln.Addr())
		if err != nil {
			return res, fmt.Errorf("bench: dial %v: %w", ln.Addr(), err)
		}
		conns = append(conns, c)
		if err := c.SetWriteDeadline(deadline); err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
		wg.Go(func() { send(c) })
	}
	for s.accepted() < p.streams {
		if err := measure.Sleep(dctx, 10*time.Millisecond); err != nil {
			return res, fmt.Errorf("bench: %d of %d streams accepted: %w", s.accepted(), p.streams, err)
		}
	}

	if err := measure.Sleep(ctx, p.warmup); err != nil {
		return res, err
	}
	// The counters are read just outside the interval of bytes and CPU
	// time, so that the daemons' work answering them is not charged to
	// the interval and no drop in it is missed.
	var s0 snapshot
	if p.counters != nil {
		if s0, err = p.counters(ctx); err != nil {
			return res, err
		}
	}
	b0, c0, t0 := s.bytes.Load(), 0.0, time.Now()
	if c0, err = p.cpu(); err != nil {
		return res, err
	}
	if p.during != nil {
		dctx, dcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.during(dctx)
		}()
		// On an early return, stop it; either way wait for it while the
		// streams still send.
		defer func() {
			<-done
			dcancel()
		}()
		defer func() {
			if ctx.Err() != nil {
				dcancel()
			}
		}()
	}
	if err := measure.Sleep(ctx, p.dur); err != nil {
		return res, err
	}
	b1, t1 := s.bytes.Load(), time.Now()
	c1, err := p.cpu()
	if err != nil {
		return res, err
	}
	var s1 snapshot
	if p.counters != nil {
		if s1, err = p.counters(ctx); err != nil {
			return res, err
		}
	}

	res.Bytes = b1 - b0
	res.Seconds = t1.Sub(t0).Seconds()
	res.Mbps = float64(res.Bytes) * 8 / res.Seconds / 1e6
	res.CPUSeconds = c1 - c0
	if res.Bytes == 0 {
		return res, errors.New("bench: no bytes received during the measured interval")
	}
	res.CPUPerGB = res.CPUSeconds / (float64(res.Bytes) / 1e9)
	if p.counters != nil {
		res.Retransmits = s1.retrans - min(s0.retrans, s1.retrans)
		res.RetransPerGB = res.perGB(res.Retransmits)
		var total uint64
		for k, v := range delta(s0.drops, s1.drops) {
			if v == 0 {
				continue
			}
			if res.Drops == nil {
				res.Drops = map[string]uint64{}
			}
			res.Drops[k] = v
			if inTotal(k) {
				total += v
			}
		}
		res.DropsPerGB = res.perGB(total)
	}
	return res, nil
}

// send writes to c until a write fails (c closed or its deadline passed).
func send(c net.Conn) {
	buf := make([]byte, 128<<10)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}
