// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := backoff{min: 250 * time.Millisecond, max: 15 * time.Second}
	tests := []struct {
		failures int
		rnd      float64
		want     time.Duration
	}{
		{0, 0.5, 250 * time.Millisecond},
		{0, 0, 125 * time.Millisecond},
		{1, 0.5, 500 * time.Millisecond},
		{3, 0.5, 2 * time.Second},
		{3, 0, time.Second},
		{6, 0.5, 15 * time.Second}, // 16 s capped
		{6, 0.999, 15 * time.Second},
		{6, 0, 7500 * time.Millisecond},
		{1000, 0.5, 15 * time.Second}, // no overflow
	}
	for _, tt := range tests {
		got := b.delay(tt.failures, func() float64 { return tt.rnd })
		if got != tt.want {
			t.Errorf("delay(%d, rnd=%v) = %v, want %v", tt.failures, tt.rnd, got, tt.want)
		}
	}
}

// fakeConn is a liveConn that dies when kill is called.
type fakeConn struct {
	done   chan struct{}
	once   sync.Once
	closed string
}

func newFakeConn() *fakeConn { return &fakeConn{done: make(chan struct{})} }

func (f *fakeConn) Done() <-chan struct{} { return f.done }
func (f *fakeConn) Err() error            { return errors.New("fake conn died") }
func (f *fakeConn) kill()                 { f.once.Do(func() { close(f.done) }) }
func (f *fakeConn) Close(reason string) error {
	f.closed = reason
	f.kill()
	return nil
}

// logRecorder is a slog.Handler that keeps the message and attributes of
// every record, those given to Logger.With included.
type logRecorder struct {
	mu   sync.Mutex // guards recs
	recs []map[string]string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &logRecorderWith{h: h, attrs: as}
}
func (h *logRecorder) WithGroup(string) slog.Handler { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	return h.record(nil, r)
}

func (h *logRecorder) record(pre []slog.Attr, r slog.Record) error {
	m := map[string]string{"msg": r.Message}
	for _, a := range pre {
		m[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	h.recs = append(h.recs, m)
	h.mu.Unlock()
	return nil
}

// count counts the records with message msg.
func (h *logRecorder) count(msg string) int {
	return h.countIf(func(m map[string]string) bool { return m["msg"] == msg })
}

// find counts the records with message msg and attribute key = value.
func (h *logRecorder) find(msg, key, value string) int {
	return h.countIf(func(m map[string]string) bool { return m["msg"] == msg && m[key] == value })
}

func (h *logRecorder) countIf(match func(rec map[string]string) bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.recs {
		if match(m) {
			n++
		}
	}
	return n
}

// logRecorderWith is a logRecorder with attributes from Logger.With.
type logRecorderWith struct {
	h     *logRecorder
	attrs []slog.Attr
}

func (p *logRecorderWith) Enabled(context.Context, slog.Level) bool { return true }
func (p *logRecorderWith) WithAttrs(as []slog.Attr) slog.Handler {
	return &logRecorderWith{h: p.h, attrs: append(append([]slog.Attr{}, p.attrs...), as...)}
}
func (p *logRecorderWith) WithGroup(string) slog.Handler { return p }
func (p *logRecorderWith) Handle(_ context.Context, r slog.Record) error {
	return p.h.record(p.attrs, r)
}

func TestDialLoopBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const failures = 8
		b := backoff{min: 250 * time.Millisecond, max: 5 * time.Second}
		h := &logRecorder{}
		ctx, cancel := context.WithCancel(t.Context())
		var (
			mu       sync.Mutex // guards the following fields.
			attempts []time.Time
			conns    []*fakeConn
			ups      []*fakeConn
		)
		dial := func(context.Context) (*fakeConn, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, time.Now())
			if len(attempts) <= failures || len(attempts) == failures+2 {
				return nil, errors.New("connection refused")
			}
			c := newFakeConn()
			conns = append(conns, c)
			return c, nil
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			dialLoop(ctx, slog.New(h), b, nil, nil, dial, func(c *fakeConn) {
				mu.Lock()
				ups = append(ups, c)
				mu.Unlock()
			})
		}()
		// The dial loop is blocked on a timer at every synctest.Wait, so
		// the test goroutine may read the shared state under mu.
		mu.Lock()
		defer mu.Unlock()
		wait := func() {
			mu.Unlock()
			synctest.Wait()
			mu.Lock()
		}
		sleep := func(d time.Duration) {
			mu.Unlock()
			time.Sleep(d)
			synctest.Wait()
			mu.Lock()
		}

		wait() // blocked in the backoff after the first failure
		for len(attempts) <= failures {
			sleep(b.max)
		}
		if len(ups) != 1 {
			t.Fatalf("up called %d times after %d failures and a success, want 1", len(ups), failures)
		}
		for i := 1; i <= failures; i++ {
			gap := attempts[i].Sub(attempts[i-1])
			base := min(b.min<<i, b.max)
			if lo := base / 2; gap < lo || gap > b.max {
				t.Errorf("wait after failure %d = %v, want in [%v, %v]", i, gap, lo, min(base*3/2, b.max))
			}
		}
		if got := h.count("quicconn: dial failed"); got != failures {
			t.Errorf("%d failure log lines, want one per failed attempt (%d)", got, failures)
		}

		// The conn dies: the loop waits about RedialMin (the backoff was
		// reset by the success), fails once, and the next wait is short
		// again.
		dead := time.Now()
		conns[0].kill()
		sleep(time.Minute)
		if len(attempts) != failures+3 || len(ups) != 2 {
			t.Fatalf("after the conn died: %d attempts, %d ups; want %d and 2", len(attempts), len(ups), failures+3)
		}
		if gap := attempts[failures+1].Sub(dead); gap < b.min/2 || gap > b.min*3/2 {
			t.Errorf("redial after a dead conn waited %v, want about %v", gap, b.min)
		}
		if gap := attempts[failures+2].Sub(attempts[failures+1]); gap > 2*b.min*3/2 {
			t.Errorf("wait after the first failure following a success = %v, want the reset backoff (<= %v)", gap, 2*b.min*3/2)
		}

		cancel()
		wait()
		select {
		case <-done:
		default:
			t.Fatal("dialLoop did not return after cancel")
		}
		if got := conns[1].closed; got != "shutting down" {
			t.Errorf("live conn closed with %q on cancel, want %q", got, "shutting down")
		}
	})
}

// goneConn is a fakeConn that reports being abandoned (Conn.Abandon).
type goneConn struct{ *fakeConn }

func (g goneConn) abandoned() bool { return true }

// TestDialLoopUplinks: while no uplink is usable the loop does not dial
// but waits for the wake-up (UplinksChanged), which also cuts a backoff
// short; a connection ended by Abandon is redialed without the RedialMin
// wait, one ended otherwise after it.
func TestDialLoopUplinks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := backoff{min: 250 * time.Millisecond, max: 5 * time.Second}
		var (
			mu       sync.Mutex // guards the following fields.
			results  []error    // what the next attempts return; nil: a conn
			attempts []time.Time
			conns    []*fakeConn
			wake     = make(chan struct{})
		)
		wakeUp := func() {
			mu.Lock()
			close(wake)
			wake = make(chan struct{})
			mu.Unlock()
			synctest.Wait()
		}
		gone := map[*fakeConn]bool{}
		dial := func(context.Context) (liveConn, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, time.Now())
			if len(results) > 0 {
				err := results[0]
				results = results[1:]
				if err != nil {
					return nil, err
				}
			}
			c := newFakeConn()
			conns = append(conns, c)
			if gone[nil] { // the next conn will be abandoned
				delete(gone, nil)
				return goneConn{c}, nil
			}
			return c, nil
		}
		count := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(attempts)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		mu.Lock()
		results = []error{ErrNoUplink, ErrNoUplink, errors.New("refused"), nil}
		mu.Unlock()
		h := &logRecorder{}
		go dialLoop(ctx, slog.New(h), b, nil, func() <-chan struct{} {
			mu.Lock()
			defer mu.Unlock()
			return wake
		}, dial, func(liveConn) {})

		synctest.Wait()
		if n := count(); n != 1 {
			t.Fatalf("attempts without an uplink = %d, want 1 (then wait)", n)
		}
		time.Sleep(b.max / 2)
		synctest.Wait()
		if n := count(); n != 1 {
			t.Fatalf("attempts %v after no uplink = %d, want 1 (waiting for a wake-up)", b.max/2, n)
		}
		wakeUp() // still none
		if n := count(); n != 2 {
			t.Fatalf("attempts after a wake-up = %d, want 2", n)
		}
		if got := h.count("quicconn: no usable uplink; waiting for one"); got != 1 {
			t.Errorf("%d waiting log lines, want 1", got)
		}
		wakeUp() // fails: backoff
		if n := count(); n != 3 {
			t.Fatalf("attempts after the second wake-up = %d, want 3", n)
		}
		wakeUp() // cuts the backoff short: a conn
		if n := count(); n != 4 {
			t.Fatalf("attempts after a wake-up during the backoff = %d, want 4", n)
		}

		// An ordinary end waits about RedialMin.
		mu.Lock()
		gone[nil] = true // the next conn is abandoned
		c := conns[0]
		mu.Unlock()
		c.kill()
		synctest.Wait()
		if n := count(); n != 4 {
			t.Errorf("attempts right after an ordinary end = %d, want 4 (RedialMin first)", n)
		}
		time.Sleep(b.min * 3 / 2)
		synctest.Wait()
		if n := count(); n != 5 {
			t.Fatalf("attempts after RedialMin = %d, want 5", n)
		}
		mu.Lock()
		c = conns[1]
		mu.Unlock()
		c.kill() // abandoned: at once
		synctest.Wait()
		if n := count(); n != 6 {
			t.Errorf("attempts right after Abandon = %d, want 6 (no wait)", n)
		}
		cancel()
		synctest.Wait()
	})
}

// earlyConn is a fakeConn handed out before its hello exchange completed
// (a 0-RTT dial); hello closes helloed.
type earlyConn struct {
	*fakeConn
	helloed chan struct{}
}

func (e earlyConn) HelloDone() <-chan struct{} { return e.helloed }

// TestDialLoopEarlyRefused: a peer that refuses every handshake while the
// dialer holds a 0-RTT ticket makes every dial "succeed" early and the
// conn die before its hello. The loop must back off as after failed dials
// (up to the cap), not redial every RedialMin; a conn whose hello
// completes resets the backoff.
func TestDialLoopEarlyRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := backoff{min: 250 * time.Millisecond, max: 4 * time.Second}
		h := &logRecorder{}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var (
			mu       sync.Mutex // guards the following fields.
			attempts []time.Time
			conns    []earlyConn
		)
		dial := func(context.Context) (earlyConn, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, time.Now())
			c := earlyConn{newFakeConn(), make(chan struct{})}
			conns = append(conns, c)
			return c, nil
		}
		refuse := true // the peer refuses: each conn dies 50 ms after up
		up := func(c earlyConn) {
			if refuse {
				time.AfterFunc(50*time.Millisecond, c.kill)
			} else {
				close(c.helloed)
			}
		}
		go dialLoop(ctx, slog.New(h), b, nil, nil, dial, up)

		time.Sleep(30 * time.Second)
		synctest.Wait()
		mu.Lock()
		n := len(attempts)
		var gaps []time.Duration
		for i := 1; i < n; i++ {
			gaps = append(gaps, attempts[i].Sub(attempts[i-1]))
		}
		mu.Unlock()
		// 0.25, 0.5, 1, 2, then 4 s (+-50 %, capped): about 11 in 30 s;
		// every RedialMin would be about 100.
		if n > 16 {
			t.Errorf("%d dials in 30 s with every handshake refused, want at most 16 (backoff to %v); gaps %v", n, b.max, gaps)
		}
		if last := gaps[len(gaps)-1]; last < b.max/2 {
			t.Errorf("last gap %v, want the backoff near its cap %v; gaps %v", last, b.max, gaps)
		}
		if got := h.count("quicconn: dial failed"); got < n-1 {
			t.Errorf("%d \"dial failed\" lines for %d refused early conns", got, n)
		}

		// The peer accepts again: the next conn completes its hello and
		// stays; when it dies, the redial waits only about RedialMin.
		mu.Lock()
		refuse = false
		mu.Unlock()
		time.Sleep(b.max + time.Second)
		synctest.Wait()
		mu.Lock()
		live := conns[len(conns)-1]
		n = len(attempts)
		mu.Unlock()
		died := time.Now()
		live.kill()
		time.Sleep(b.max)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if len(attempts) != n+1 {
			t.Fatalf("%d dials after the live conn died, want 1", len(attempts)-n)
		}
		if gap := attempts[n].Sub(died); gap > b.min*3/2 {
			t.Errorf("redial after a conn that completed its hello waited %v, want about %v (backoff reset)", gap, b.min)
		}
	})
}
