// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// pathSim feeds a monitor synthetic counters, one poll every 25 ms (the
// default Poll), as quic-go would count them on a path with an RTT of
// srtt.
type pathSim struct {
	t       *testing.T
	m       *monitor
	now     time.Duration
	pc      pathCounters
	changes []verdict
	at      []time.Duration // when each change happened
}

func newPathSim(t *testing.T, cfg HealthConfig, srtt time.Duration) *pathSim {
	s := &pathSim{t: t, m: newMonitor(cfg.withDefaults()), now: time.Second, pc: pathCounters{sent: 100, rcvd: 100, srtt: srtt}}
	s.m.observe(s.now, s.pc) // the first poll
	return s
}

// poll advances one Poll with the counters changed by f. Bytes that f
// leaves alone follow the packets, 1000 bytes each.
func (s *pathSim) poll(f func(pc *pathCounters)) verdict {
	s.now += defaultPoll
	before := s.pc
	if f != nil {
		f(&s.pc)
	}
	if s.pc.bsent == before.bsent {
		s.pc.bsent += (s.pc.sent - before.sent) * 1000
	}
	if s.pc.blost == before.blost {
		s.pc.blost += (s.pc.lost - before.lost) * 1000
	}
	v := s.m.observe(s.now, s.pc)
	if v.reason != "" {
		s.changes = append(s.changes, v)
		s.at = append(s.at, s.now)
		s.t.Logf("%7v %-6s %s", s.now, v.state, v.reason)
	}
	return v
}

// run polls for d, calling f at every poll with the poll's index.
func (s *pathSim) run(d time.Duration, f func(i int, pc *pathCounters)) {
	for i := 0; time.Duration(i)*defaultPoll < d; i++ {
		s.poll(func(pc *pathCounters) {
			if f != nil {
				f(i, pc)
			}
		})
	}
}

// traffic is a busy path in both directions: n packets each way per poll.
func traffic(n uint64) func(int, *pathCounters) {
	return func(_ int, pc *pathCounters) {
		pc.sent += n
		pc.rcvd += n
	}
}

// idle is an idle monitored path: a heartbeat every 250 ms (10 polls),
// answered within the next poll, and our ACK of the answer sent in the
// poll after that (late, within max_ack_delay).
func idle(i int, pc *pathCounters) {
	switch i % 10 {
	case 0:
		pc.sent++ // heartbeat
	case 1:
		pc.rcvd++ // the peer's ACK and reply
	case 2:
		pc.sent++ // our ACK-only packet
	}
}

func (s *pathSim) wantChanges(want ...HealthState) {
	s.t.Helper()
	var got []HealthState
	for _, v := range s.changes {
		got = append(got, v.state)
	}
	if len(got) != len(want) {
		s.t.Fatalf("changes %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			s.t.Fatalf("changes %v, want %v", got, want)
		}
	}
}

func TestMonitorHealthyPaths(t *testing.T) {
	t.Run("busy", func(t *testing.T) {
		s := newPathSim(t, HealthConfig{}, time.Millisecond)
		s.run(5*time.Second, traffic(10))
		s.wantChanges()
	})
	t.Run("idle with late ACKs", func(t *testing.T) {
		s := newPathSim(t, HealthConfig{}, time.Millisecond)
		s.run(10*time.Second, idle)
		s.wantChanges()
	})
	t.Run("we only send ACKs", func(t *testing.T) {
		// The peer sends datagrams every 100 ms; we answer each with an
		// ACK-only packet at the next poll: nothing of ours is
		// ack-eliciting, so nothing is missing.
		s := newPathSim(t, HealthConfig{}, time.Millisecond)
		s.run(10*time.Second, func(i int, pc *pathCounters) {
			switch i % 4 {
			case 0:
				pc.rcvd++
			case 1:
				pc.sent++
			}
		})
		s.wantChanges()
	})
	t.Run("one lost packet nothing follows", func(t *testing.T) {
		// A lone path-MTU probe, lost, 100 ms after a heartbeat exchange:
		// one packet unanswered until the next heartbeat's answer.
		s := newPathSim(t, HealthConfig{}, time.Millisecond)
		s.run(10*time.Second, func(i int, pc *pathCounters) {
			idle(i, pc)
			if i%10 == 4 {
				pc.sent++
			}
		})
		s.wantChanges()
	})
}

func TestMonitorSilent(t *testing.T) {
	t.Run("busy path dies", func(t *testing.T) {
		s := newPathSim(t, HealthConfig{}, time.Millisecond)
		s.run(2*time.Second, traffic(10))
		died := s.now
		s.run(2*time.Second, func(_ int, pc *pathCounters) { pc.sent += 10 })
		s.wantChanges(HealthSilent)
		// ackGrace 40 ms + 100 ms Floor + up to two polls of lag.
		if d := s.at[0] - died; d > 200*time.Millisecond {
			t.Errorf("Silent %v after the path died, want within 200 ms", d)
		}
		if r := s.changes[0].reason; !strings.HasPrefix(r, "silent: nothing received for ") || !strings.HasSuffix(r, "packets sent") {
			t.Errorf("reason %q", r)
		}
	})
	t.Run("slow path waits 3 RTT", func(t *testing.T) {
		s := newPathSim(t, HealthConfig{}, 200*time.Millisecond)
		s.run(2*time.Second, traffic(10))
		died := s.now
		s.run(2*time.Second, func(_ int, pc *pathCounters) { pc.sent += 10 })
		s.wantChanges(HealthSilent)
		if d := s.at[0] - died; d < 600*time.Millisecond || d > 700*time.Millisecond {
			t.Errorf("Silent %v after the path died, want 3 SRTT (600 ms) plus the grace", d)
		}
	})
	t.Run("idle path dies", func(t *testing.T) {
		s := newPathSim(t, HealthConfig{}, time.Millisecond)
		s.run(2*time.Second, idle)
		died := s.now
		// Only our heartbeats now (no PTO probes in this model: the worst case).
		s.run(2*time.Second, func(i int, pc *pathCounters) {
			if i%10 == 0 {
				pc.sent++
			}
		})
		s.wantChanges(HealthSilent)
		if d := s.at[0] - died; d > 600*time.Millisecond {
			t.Errorf("idle path Silent %v after it died, want within 600 ms", d)
		}
	})
}

func TestMonitorRecovers(t *testing.T) {
	s := newPathSim(t, HealthConfig{}, time.Millisecond)
	s.run(time.Second, traffic(10))
	s.run(time.Second, func(_ int, pc *pathCounters) { pc.sent += 10 })
	s.wantChanges(HealthSilent)
	back := s.now
	// The first ACKs declare everything sent into the silence lost.
	s.poll(func(pc *pathCounters) { pc.rcvd += 10; pc.sent += 10; pc.lost += 350 })
	s.run(3*time.Second, traffic(10))
	s.wantChanges(HealthSilent, HealthUp)
	if d := s.at[1] - back; d < time.Second || d > time.Second+2*defaultPoll {
		t.Errorf("Up %v after packets flowed again, want the 1 s hold", d)
	}
	if r := s.changes[1].reason; !strings.HasPrefix(r, "back after ") || !strings.Contains(r, "silent for") {
		t.Errorf("reason %q", r)
	}
}

func TestMonitorLossy(t *testing.T) {
	t.Run("busy", func(t *testing.T) {
		s := newPathSim(t, HealthConfig{}, time.Millisecond)
		s.run(time.Second, traffic(10))
		start := s.now
		s.run(2*time.Second, func(i int, pc *pathCounters) {
			traffic(10)(i, pc)
			pc.lost += 3
		})
		s.wantChanges(HealthLossy)
		if d := s.at[0] - start; d > time.Second {
			t.Errorf("Lossy %v after 30 %% loss began, want within 1 s", d)
		}
		if r := s.changes[0].reason; !strings.HasPrefix(r, "loss ") {
			t.Errorf("reason %q", r)
		}
		healed := s.now
		s.run(4*time.Second, traffic(10))
		s.wantChanges(HealthLossy, HealthUp)
		// The window forgets the loss within 1 s; then the 1 s hold.
		if d := s.at[1] - healed; d > 2200*time.Millisecond {
			t.Errorf("Up %v after the loss stopped, want within 2.2 s", d)
		}
	})
	t.Run("congestion is not a lossy path", func(t *testing.T) {
		// 30 % lost while a queue of 25 ms stands on a 1 ms path (a full
		// tbf), with the queue draining for a moment every half second:
		// the bottleneck's overflow, not a bad path.
		s := newPathSim(t, HealthConfig{}, time.Millisecond)
		s.pc.latest = time.Millisecond
		s.run(time.Second, traffic(10))
		s.run(3*time.Second, func(i int, pc *pathCounters) {
			traffic(10)(i, pc)
			pc.lost += 3
			pc.srtt, pc.latest = 26*time.Millisecond, 26*time.Millisecond
			if i%20 == 0 {
				pc.srtt, pc.latest = 2*time.Millisecond, 2*time.Millisecond
			}
		})
		s.wantChanges()
		// Once the queue is gone for LossWindow, the same loss is.
		s.run(3*time.Second, func(i int, pc *pathCounters) {
			traffic(10)(i, pc)
			pc.lost += 3
			pc.srtt, pc.latest = time.Millisecond, time.Millisecond
		})
		s.wantChanges(HealthLossy)
	})
	t.Run("loss and a queue while the rate collapses", func(t *testing.T) {
		// The edge of Wi-Fi range: link retries build a queue and lose a
		// third of the packets, and the traffic falls to a tenth of what
		// the path carried: a lossy path, not congestion.
		s := newPathSim(t, HealthConfig{}, time.Millisecond)
		s.pc.latest = time.Millisecond
		s.run(time.Second, traffic(10))
		s.run(3*time.Second, func(i int, pc *pathCounters) {
			traffic(1)(i, pc)
			if i%3 == 0 {
				pc.lost++
			}
			pc.srtt, pc.latest = 26*time.Millisecond, 26*time.Millisecond
		})
		s.wantChanges(HealthLossy)
	})
	t.Run("a longer path is not a queue", func(t *testing.T) {
		// The path's RTT grows from 1 ms to 21 ms for good (another
		// route) and then it loses 30 %: after a base window the 21 ms
		// are the base, and the loss is a lossy path.
		s := newPathSim(t, HealthConfig{}, time.Millisecond)
		s.pc.latest = time.Millisecond
		s.run(time.Second, traffic(10))
		s.run(2*baseWindow, func(i int, pc *pathCounters) {
			traffic(10)(i, pc)
			pc.srtt, pc.latest = 21*time.Millisecond, 21*time.Millisecond
		})
		if got := s.m.base(); got != 21*time.Millisecond {
			t.Fatalf("base RTT %v after 2 base windows at 21 ms, want 21ms", got)
		}
		s.run(3*time.Second, func(i int, pc *pathCounters) {
			traffic(10)(i, pc)
			pc.lost += 3
		})
		s.wantChanges(HealthLossy)
	})
	t.Run("idle reaches back", func(t *testing.T) {
		// 8 packets a second, every third lost: the 1 s window never holds
		// 20, the reach over 20 heartbeats (5 s) does.
		s := newPathSim(t, HealthConfig{}, time.Millisecond)
		n := 0
		s.run(6*time.Second, func(i int, pc *pathCounters) {
			idle(i, pc)
			if i%10 == 0 {
				if n++; n%3 == 0 {
					pc.lost++
				}
			}
		})
		s.wantChanges(HealthLossy)
	})
	t.Run("in bytes", func(t *testing.T) {
		// Per poll: 10 datagram packets of 1200 bytes, 3 of them lost, and
		// 5 ACK-only packets of 45 bytes. In packets 20 %, in bytes 29 %.
		s := newPathSim(t, HealthConfig{LossThreshold: 0.25}, time.Millisecond)
		s.run(3*time.Second, func(_ int, pc *pathCounters) {
			pc.sent += 15
			pc.rcvd += 10
			pc.lost += 3
			pc.bsent += 10*1200 + 5*45
			pc.blost += 3 * 1200
		})
		s.wantChanges(HealthLossy)
		if l := s.changes[0].loss; l < 0.28 || l > 0.30 {
			t.Errorf("loss %v, want the byte ratio 0.29", l)
		}
	})
	t.Run("too few packets", func(t *testing.T) {
		s := newPathSim(t, HealthConfig{LossMinPackets: 1000}, time.Millisecond)
		s.run(3*time.Second, func(i int, pc *pathCounters) {
			traffic(1)(i, pc)
			pc.lost++
		})
		s.wantChanges()
	})
	t.Run("below threshold", func(t *testing.T) {
		s := newPathSim(t, HealthConfig{}, time.Millisecond)
		s.run(5*time.Second, func(i int, pc *pathCounters) {
			traffic(20)(i, pc)
			if i%2 == 0 {
				pc.lost++ // 2.5 %
			}
		})
		s.wantChanges()
	})
}

func TestPackHealth(t *testing.T) {
	tests := []struct {
		s    HealthState
		loss float64
		srtt time.Duration
	}{
		{HealthUp, 0, 0},
		{HealthSilent, 1, 1500 * time.Microsecond},
		{HealthLossy, 0.31, 200 * time.Millisecond},
		{HealthDown, 0.5, 48 * time.Hour},
	}
	for _, tt := range tests {
		w := packHealth(tt.s, tt.loss, tt.srtt)
		if s := HealthState(w & 0xff); s != tt.s {
			t.Errorf("state %v -> %v", tt.s, s)
		}
		if l := float64(w>>8&0xffff) / 0xffff; l < tt.loss-1e-4 || l > tt.loss+1e-4 {
			t.Errorf("loss %v -> %v", tt.loss, l)
		}
		if d := time.Duration(w>>24) * time.Microsecond; d != tt.srtt {
			t.Errorf("srtt %v -> %v", tt.srtt, d)
		}
	}
}

// healthChange is one call of HealthConfig.Changed.
type healthChange struct {
	c        *Conn
	old, new HealthState
	reason   string
	at       time.Time
}

// watchHealth monitors c with the defaults and returns the channel its
// changes arrive on.
func watchHealth(c *Conn) <-chan healthChange { return watchHealthCfg(c, HealthConfig{}) }

// watchHealthCfg is watchHealth with cfg (its Changed is replaced).
func watchHealthCfg(c *Conn, cfg HealthConfig) <-chan healthChange {
	ch := make(chan healthChange, 32)
	cfg.Changed = func(c *Conn, old, new HealthState, reason string) {
		ch <- healthChange{c, old, new, reason, time.Now()}
	}
	c.MonitorPath(cfg)
	return ch
}

// nextChange waits up to d for the next change on ch and fails the test
// if there is none.
func nextChange(t *testing.T, who string, ch <-chan healthChange, d time.Duration) healthChange {
	t.Helper()
	select {
	case hc := <-ch:
		return hc
	case <-time.After(d):
		t.Fatalf("%s: no path health change within %v", who, d)
		return healthChange{}
	}
}

// expectNoChange fails if ch delivers a change within d.
func expectNoChange(t *testing.T, who string, ch <-chan healthChange, d time.Duration) {
	t.Helper()
	select {
	case hc := <-ch:
		t.Fatalf("%s: unexpected change %v -> %v (%s)", who, hc.old, hc.new, hc.reason)
	case <-time.After(d):
	}
}

// pump sends a datagram from -> to every interval until the test ends,
// and drains to.
func pump(t *testing.T, from, to *Conn, interval time.Duration) {
	background(t, func(ctx context.Context) {
		tk := time.NewTicker(interval)
		defer tk.Stop()
		b := make([]byte, 200)
		b[0] = 0x45
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			if from.SendDatagram(b) != nil {
				return
			}
		}
	})
	background(t, func(ctx context.Context) {
		for {
			b, err := to.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			to.ReleaseDatagram(b)
		}
	})
}

// TestPathHealthSilent blackholes a monitored path, busy and idle: both
// sides report Silent, then Up once packets flow again and the hold has
// passed.
func TestPathHealthSilent(t *testing.T) {
	for _, tt := range []struct {
		name  string
		busy  bool
		bound time.Duration // Silent must be reported within this
	}{
		{"busy", true, time.Second},
		{"idle", false, 2 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPair(t, nil)
			proxy, c, s := dialViaProxy(t, p)
			cch, sch := watchHealth(c), watchHealth(s)
			if tt.busy {
				pump(t, c, s, 2*time.Millisecond)
				pump(t, s, c, 2*time.Millisecond)
			}
			expectNoChange(t, "client on a working path", cch, time.Second)
			if h := c.PathHealth(); h.State != HealthUp || h.SRTT <= 0 || h.LastRx > 500*time.Millisecond || h.Loss != 0 {
				t.Errorf("client PathHealth() = %+v on a working path, want Up with an SRTT, a recent LastRx and no loss", h)
			}
			expectNoChange(t, "server on a working path", sch, 0)

			proxy.drop.Store(true)
			start := time.Now()
			for _, x := range []struct {
				who string
				c   *Conn
				ch  <-chan healthChange
			}{{"client", c, cch}, {"server", s, sch}} {
				hc := nextChange(t, x.who, x.ch, 5*time.Second)
				took := hc.at.Sub(start)
				t.Logf("%s: %v -> %v after %v: %s", x.who, hc.old, hc.new, took.Round(time.Millisecond), hc.reason)
				if hc.old != HealthUp || hc.new != HealthSilent || !strings.HasPrefix(hc.reason, "silent: ") {
					t.Errorf("%s: change %v -> %v (%s), want up -> silent", x.who, hc.old, hc.new, hc.reason)
				}
				if took > tt.bound {
					t.Errorf("%s: Silent after %v, want within %v", x.who, took, tt.bound)
				}
				if h := x.c.PathHealth(); h.State != HealthSilent || h.LastRx < 100*time.Millisecond {
					t.Errorf("%s: PathHealth() = %+v, want Silent with an old LastRx", x.who, h)
				}
			}

			proxy.drop.Store(false)
			start = time.Now()
			hc := nextChange(t, "client", cch, 10*time.Second)
			took := hc.at.Sub(start)
			t.Logf("client: %v -> %v after %v: %s", hc.old, hc.new, took.Round(time.Millisecond), hc.reason)
			if hc.new != HealthUp || !strings.HasPrefix(hc.reason, "back after ") {
				t.Errorf("client: change %v -> %v (%s), want -> up", hc.old, hc.new, hc.reason)
			}
			if took < defaultHold {
				t.Errorf("client: Up %v after the path healed, want the %v hold first", took, defaultHold)
			}
			if c.Err() != nil || s.Err() != nil {
				t.Errorf("conn died: client %v, server %v", c.Err(), s.Err())
			}
		})
	}
}

// TestPathHealthLossy drops 30 % of the packets of a busy path: Lossy,
// then Up once the loss stops.
func TestPathHealthLossy(t *testing.T) {
	p := newTestPair(t, nil)
	proxy, c, s := dialViaProxy(t, p)
	cch := watchHealth(c)
	pump(t, c, s, 2*time.Millisecond)
	pump(t, s, c, 2*time.Millisecond)
	expectNoChange(t, "client on a working path", cch, time.Second)
	proxy.loss.Store(30)
	start := time.Now()
	hc := nextChange(t, "client", cch, 10*time.Second)
	took := hc.at.Sub(start)
	t.Logf("client: %v -> %v after %v: %s (PathHealth %+v)", hc.old, hc.new, took.Round(time.Millisecond), hc.reason, c.PathHealth())
	if hc.new != HealthLossy || !strings.HasPrefix(hc.reason, "loss ") {
		t.Fatalf("client: change %v -> %v (%s), want -> lossy", hc.old, hc.new, hc.reason)
	}
	if took > 3*time.Second {
		t.Errorf("client: Lossy after %v, want within 3 s", took)
	}
	if h := c.PathHealth(); h.State == HealthLossy && h.Loss <= defaultLossThreshold {
		t.Errorf("PathHealth() = %+v: Lossy with a loss at or below the threshold", h)
	}
	time.Sleep(1500 * time.Millisecond)
	t.Logf("client after 1.5 s more of 30 %% loss each way: PathHealth %+v", c.PathHealth())
	proxy.loss.Store(0)
	start = time.Now()
	for {
		hc = nextChange(t, "client", cch, 10*time.Second)
		t.Logf("client: %v -> %v after %v: %s", hc.old, hc.new, hc.at.Sub(start).Round(time.Millisecond), hc.reason)
		if hc.new == HealthUp {
			break
		}
	}
}

// TestPathHealthNoFalseAlarm: a monitored, working loopback path stays Up
// idle, with traffic one way (one side sends almost only ACKs), and the
// other way.
func TestPathHealthNoFalseAlarm(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	// A Floor above the stalls of a loaded 2-core machine under -race, so
	// that only a wrong verdict fails the test; what it checks (ACK-only
	// packets never count as unanswered) does not depend on the Floor,
	// and TestMonitorHealthyPaths checks it at the default.
	cch, sch := watchHealthCfg(c, HealthConfig{Floor: 300 * time.Millisecond}), watchHealthCfg(s, HealthConfig{Floor: 300 * time.Millisecond})
	expectNoChange(t, "client idle", cch, 2*time.Second)
	var stop atomic.Bool
	background(t, func(ctx context.Context) {
		b := []byte{0x45, 0}
		for !stop.Load() && ctx.Err() == nil {
			_ = s.SendDatagram(b)
			time.Sleep(30 * time.Millisecond)
		}
	})
	expectNoChange(t, "client receiving", cch, 2*time.Second)
	stop.Store(true)
	pump(t, c, s, 10*time.Millisecond)
	expectNoChange(t, "client sending", cch, 2*time.Second)
	expectNoChange(t, "server", sch, 0)
	if h := c.PathHealth(); h.State != HealthUp {
		t.Errorf("PathHealth() = %+v, want Up", h)
	}
}

// TestMonitorPathLifecycle: nothing changes without MonitorPath; it makes
// heartbeats fast, only the first call counts, and the close is reported
// as Down once.
func TestMonitorPathLifecycle(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	if h := c.PathHealth(); h != (Health{}) {
		t.Errorf("PathHealth() before MonitorPath = %+v, want zero (unmonitored)", h)
	}
	if d := c.heartbeatInterval(); d != 2*time.Second {
		t.Errorf("heartbeat interval %v before MonitorPath, want Config.Heartbeat 2s", d)
	}
	ch := watchHealth(c)
	var second atomic.Int32
	c.MonitorPath(HealthConfig{Probe: time.Hour, Changed: func(*Conn, HealthState, HealthState, string) { second.Add(1) }})
	if d := c.heartbeatInterval(); d != defaultProbe {
		t.Errorf("heartbeat interval %v after MonitorPath, want %v (the second call ignored)", d, defaultProbe)
	}
	if h := c.PathHealth(); h.State != HealthUp {
		t.Errorf("PathHealth() after MonitorPath = %+v, want Up", h)
	}
	// Heartbeats now every 250 ms: an RTT sample well before the 2 s of
	// the default.
	if !waitFor(1500*time.Millisecond, func() bool { return c.Stats().HeartbeatRTT > 0 }) {
		t.Error("no heartbeat RTT within 1.5 s of MonitorPath")
	}
	if err := c.Close("bye"); err != nil {
		t.Fatal(err)
	}
	hc := nextChange(t, "client", ch, time.Second)
	if hc.old != HealthUp || hc.new != HealthDown || !strings.Contains(hc.reason, "bye") {
		t.Errorf("change on close %v -> %v (%s), want up -> down with the reason", hc.old, hc.new, hc.reason)
	}
	expectNoChange(t, "client after close", ch, 200*time.Millisecond)
	if n := second.Load(); n != 0 {
		t.Errorf("the second MonitorPath's Changed was called %d times", n)
	}
	if h := c.PathHealth(); h.State != HealthDown {
		t.Errorf("PathHealth() after Close = %+v, want Down", h)
	}
	waitDone(t, s, 5*time.Second)
	if h := s.PathHealth(); h != (Health{State: HealthDown}) {
		t.Errorf("unmonitored server PathHealth() after close = %+v, want Down", h)
	}
	c.MonitorPath(HealthConfig{}) // a dead conn: nothing happens
	p.cli.health.mu.Lock()
	n := len(p.cli.health.conns)
	p.cli.health.mu.Unlock()
	if n != 0 {
		t.Errorf("%d conns still monitored after close", n)
	}
}

// TestPathHealthAllocs: reading the verdict and a poll without a change
// allocate nothing.
func TestPathHealthAllocs(t *testing.T) {
	p := newTestPair(t, nil)
	c, _ := p.connect(t)
	monitorUnlooped(c)
	if n := testing.AllocsPerRun(1000, func() { _ = c.PathHealth() }); n != 0 {
		t.Errorf("PathHealth allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { c.pollHealth(2 * defaultPoll) }); n != 0 {
		t.Errorf("a poll allocates %v times, want 0", n)
	}
}

// monitorUnlooped gives c a monitor that the Endpoint's health loop does
// not poll, for benchmarks of one poll.
func monitorUnlooped(c *Conn) {
	c.hp.mon.Store(newMonitor(HealthConfig{}.withDefaults()))
	c.hp.word.Store(packHealth(HealthUp, 0, 0))
}

// BenchmarkPathHealth measures the data path's read of the verdict, from
// all CPUs at once.
func BenchmarkPathHealth(b *testing.B) {
	p := newTestPair(b, nil)
	c, _ := p.connect(b)
	c.MonitorPath(HealthConfig{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c.PathHealth().State != HealthUp {
				b.Error("not up")
				return
			}
		}
	})
}

// BenchmarkHealthPoll measures one poll of one connection (quic-go's
// ConnectionStats, the decision, publishing), which the health loop does
// every Poll for every monitored connection.
func BenchmarkHealthPoll(b *testing.B) {
	p := newTestPair(b, nil)
	c, _ := p.connect(b)
	monitorUnlooped(c)
	b.ReportAllocs()
	for b.Loop() {
		c.pollHealth(2 * defaultPoll) // a period of 2 Polls: every call is due
	}
}

// BenchmarkConnectionStats is quic-go's share of BenchmarkHealthPoll.
func BenchmarkConnectionStats(b *testing.B) {
	p := newTestPair(b, nil)
	c, _ := p.connect(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = c.qc.ConnectionStats()
	}
}

// TestSetProbe: SetProbe changes a monitored connection's heartbeat, never
// above Config.Heartbeat, and does nothing to an unmonitored or Passive
// one.
func TestSetProbe(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	c.SetProbe(100 * time.Millisecond)
	if d := c.heartbeatInterval(); d != 2*time.Second {
		t.Errorf("unmonitored: heartbeat %v after SetProbe, want Config.Heartbeat 2s", d)
	}
	c.MonitorPath(HealthConfig{Probe: time.Second})
	if d := c.heartbeatInterval(); d != time.Second {
		t.Errorf("monitored: heartbeat %v, want the Probe 1s", d)
	}
	c.SetProbe(250 * time.Millisecond)
	if d := c.heartbeatInterval(); d != 250*time.Millisecond {
		t.Errorf("after SetProbe(250ms): heartbeat %v", d)
	}
	c.SetProbe(time.Minute)
	if d := c.heartbeatInterval(); d != 2*time.Second {
		t.Errorf("after SetProbe(1m): heartbeat %v, want at most Config.Heartbeat 2s", d)
	}
	s.MonitorPath(HealthConfig{Passive: true})
	s.SetProbe(100 * time.Millisecond)
	if d := s.heartbeatInterval(); d != 2*time.Second {
		t.Errorf("passive: heartbeat %v, want Config.Heartbeat 2s", d)
	}
}
