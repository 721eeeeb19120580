// SPDX-License-Identifier: MIT

package mobility

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/quicconn"
)

// The policy's decisions, events in and calls out: each test feeds uplink
// views and path reports to a Policy over a fake endpoint and fake
// connections that record every call in one operation log, like routing's
// fake OS.

// opLog is the ordered log of the calls the policy made.
type opLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *opLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, fmt.Sprintf(format, args...))
}

func (l *opLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ops)
}

// waitFor waits until every op in want was logged (probes and redials run
// on goroutines of the policy) and returns the log.
func (l *opLog) waitFor(t *testing.T, want ...string) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := l.snapshot()
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return slices.Contains(got, w) })
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("ops %q never came; log: %q", missing, got)
		}
		time.Sleep(time.Millisecond)
	}
}

// settle waits until p has no goroutine left (probes, redials), so that
// what is not in the log will not come.
func settle(t *testing.T, p *Policy) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.probing)
		p.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d probes still running", n)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond) // a redial's Abandon follows its log line on a goroutine
}

func noOp(t *testing.T, log *opLog, prefix string) {
	t.Helper()
	for _, op := range log.snapshot() {
		if strings.HasPrefix(op, prefix) {
			t.Errorf("unexpected %q; log: %q", op, log.snapshot())
		}
	}
}

type fakeEndpoint struct {
	log  *opLog
	fail map[string]bool // AddUplink fails for these
}

func (e *fakeEndpoint) AddUplink(name string) error {
	if e.fail[name] {
		return errors.New("no such device")
	}
	e.log.add("add %s", name)
	return nil
}

func (e *fakeEndpoint) RemoveUplink(name string) error {
	e.log.add("remove %s", name)
	return nil
}

func (e *fakeEndpoint) UplinksChanged() { e.log.add("wake") }

// fakeConn is a dialed connection: an active uplink, validated standbys,
// and probes that succeed on the uplinks in answers.
type fakeConn struct {
	name string
	log  *opLog
	done chan struct{}

	mu       sync.Mutex
	uplink   string
	standby  map[string]bool
	answers  map[string]bool
	block    bool // probes wait for their context
	err      error
	switches int
}

func newConn(log *opLog, name, uplink string, answers ...string) *fakeConn {
	c := &fakeConn{name: name, log: log, done: make(chan struct{}), uplink: uplink,
		standby: map[string]bool{}, answers: map[string]bool{}}
	for _, a := range answers {
		c.answers[a] = true
	}
	return c
}

func (c *fakeConn) Uplink() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uplink
}

func (c *fakeConn) Paths() []quicconn.PathInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := []quicconn.PathInfo{{Uplink: c.uplink, Active: true, Validated: true}}
	for n := range c.standby {
		ps = append(ps, quicconn.PathInfo{Uplink: n, Validated: true})
	}
	return ps
}

func (c *fakeConn) ProbeUplink(ctx context.Context, name string) error {
	c.log.add("probe %s %s", c.name, name)
	c.mu.Lock()
	block, ok := c.block, c.answers[name]
	c.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	if !ok {
		return errors.New("no answer")
	}
	c.mu.Lock()
	c.standby[name] = true
	c.mu.Unlock()
	return nil
}

func (c *fakeConn) SwitchUplink(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if !c.standby[name] {
		return errNoStandby
	}
	delete(c.standby, name)
	c.uplink = name
	c.switches++
	c.log.add("switch %s %s", c.name, name)
	return nil
}

func (c *fakeConn) Abandon(reason string) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = errors.New(reason)
	close(c.done)
	c.mu.Unlock()
	c.log.add("abandon %s", c.name)
}

func (c *fakeConn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *fakeConn) Done() <-chan struct{} { return c.done }

func newPolicy(t *testing.T, log *opLog, fail ...string) *Policy {
	t.Helper()
	ep := &fakeEndpoint{log: log, fail: map[string]bool{}}
	for _, f := range fail {
		ep.fail[f] = true
	}
	p := New(Config{Endpoint: ep, ProbeTimeout: time.Second, ProbeRetry: time.Millisecond, ProbeTries: 2})
	t.Cleanup(p.Close)
	return p
}

// withConn returns a Policy on the usable uplinks and its log, with one
// conn, c1 to "hub" on uplink, whose probes succeed on answers.
func withConn(t *testing.T, usable []string, uplink string, answers ...string) (*opLog, *Policy, *fakeConn) {
	t.Helper()
	log := &opLog{}
	p := newPolicy(t, log)
	p.SetUplinks(usable)
	c := newConn(log, "c1", uplink, answers...)
	p.Add(c, "hub")
	return log, p, c
}

func pick(t *testing.T, p *Policy, want string, wantOK bool) {
	t.Helper()
	if got, ok := p.PickUplink(); got != want || ok != wantOK {
		t.Errorf("PickUplink() = %q, %v; want %q, %v", got, ok, want, wantOK)
	}
}

func TestPickUplink(t *testing.T) {
	log := &opLog{}
	p := newPolicy(t, log, "bad0")
	pick(t, p, "", true) // before the first view: the wildcard socket
	p.SetUplinks([]string{})
	pick(t, p, "", false) // no uplink usable: the dial waits
	p.SetUplinks([]string{"bad0", "wifi0", "cell0"})
	log.waitFor(t, "add wifi0", "add cell0", "wake")
	pick(t, p, "wifi0", true) // bad0 has no Transport
	p.SetUplinks([]string{"cell0", "wifi0"})
	pick(t, p, "cell0", true)
	if !p.WaitReady(context.Background(), 0) {
		t.Error("WaitReady = false after SetUplinks")
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	p := newPolicy(t, &opLog{})
	if p.WaitReady(context.Background(), time.Millisecond) {
		t.Error("WaitReady = true before any SetUplinks")
	}
}

// TestProbeNewUplink: a new, worse uplink is probed for every conn and kept
// as a standby; nothing moves.
func TestProbeNewUplink(t *testing.T) {
	log, p, _ := withConn(t, []string{"wifi0"}, "wifi0", "cell0")
	p.SetUplinks([]string{"wifi0", "cell0"})
	log.waitFor(t, "add cell0", "probe c1 cell0")
	settle(t, p)
	noOp(t, log, "switch")
	noOp(t, log, "abandon")
}

// TestPreferredUplinkReturns: once a better uplink validates, the conn
// switches to it and keeps its old uplink as a standby.
func TestPreferredUplinkReturns(t *testing.T) {
	log, p, _ := withConn(t, []string{"cell0"}, "cell0", "wifi0", "cell0")
	p.SetUplinks([]string{"wifi0", "cell0"})
	got := log.waitFor(t, "probe c1 wifi0", "switch c1 wifi0", "probe c1 cell0")
	if i, j := slices.Index(got, "switch c1 wifi0"), slices.Index(got, "probe c1 cell0"); j < i {
		t.Errorf("old uplink probed before the switch: %q", got)
	}
	if s := p.Status(); s != "migrated hub to wifi0" {
		t.Errorf("Status() = %q, want %q", s, "migrated hub to wifi0")
	}
}

// TestLostUplink: the active uplink goes away; a validated standby takes
// the conn (make-before-break), else it is redialed at once; the lost
// uplink's Transport is removed after its conns moved.
func TestLostUplink(t *testing.T) {
	tests := []struct {
		name    string
		answers []string // uplinks whose probe succeeds
		want    []string
		not     string
		pick    string
	}{
		{"standby validated", []string{"cell0"}, []string{"switch c1 cell0", "remove wifi0"}, "abandon", "cell0"},
		{"no standby", nil, []string{"abandon c1", "remove wifi0"}, "switch", "cell0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, p, _ := withConn(t, []string{"wifi0", "cell0"}, "wifi0", tt.answers...)
			log.waitFor(t, "probe c1 cell0")
			settle(t, p)
			p.SetUplinks([]string{"cell0"})
			got := log.waitFor(t, tt.want...)
			if tt.not == "abandon" && slices.Index(got, "remove wifi0") < slices.Index(got, tt.want[0]) {
				// A redial may come later: the Transport lives on while
				// a conn holds it.
				t.Errorf("Transport removed before the conn switched: %q", got)
			}
			settle(t, p)
			noOp(t, log, tt.not)
			pick(t, p, tt.pick, true)
		})
	}
}

// TestNothingToMoveTo: the only uplink goes away: the conn stays (the
// uplink may come back; the heartbeat ends a dead conn), and no dial is
// let out until an uplink is usable again.
func TestNothingToMoveTo(t *testing.T) {
	log, p, _ := withConn(t, []string{"wifi0"}, "wifi0")
	p.SetUplinks([]string{})
	log.waitFor(t, "remove wifi0")
	settle(t, p)
	noOp(t, log, "abandon")
	noOp(t, log, "switch")
	pick(t, p, "", false)
}

// TestPathDead: a silent path moves its conn even though its uplink looks
// fine: to a validated standby, else through a redial that avoids the
// silent uplink once.
func TestPathDead(t *testing.T) {
	t.Run("standby", func(t *testing.T) {
		log, p, c := withConn(t, []string{"wifi0", "cell0"}, "wifi0", "cell0")
		log.waitFor(t, "probe c1 cell0")
		settle(t, p)
		p.PathDead(c)
		log.waitFor(t, "switch c1 cell0")
		settle(t, p)
		noOp(t, log, "abandon")
	})
	t.Run("redial avoids the silent uplink", func(t *testing.T) {
		log, p, c := withConn(t, []string{"wifi0", "cell0"}, "wifi0")
		log.waitFor(t, "probe c1 cell0")
		settle(t, p)
		p.PathDead(c)
		log.waitFor(t, "abandon c1")
		pick(t, p, "cell0", true)
		pick(t, p, "wifi0", true) // once only: wifi0 is still the best uplink
	})
	t.Run("unknown conn", func(t *testing.T) {
		log, p, c := withConn(t, []string{"wifi0", "cell0"}, "wifi0")
		log.waitFor(t, "probe c1 cell0")
		p.Remove(c)
		p.PathDead(c)
		p.PathDead(newConn(log, "c2", "wifi0"))
		settle(t, p)
		noOp(t, log, "abandon")
		pick(t, p, "wifi0", true)
	})
}

// TestSeveralConns: every conn is handled on its own: one with a standby
// switches, one without is redialed.
func TestSeveralConns(t *testing.T) {
	log := &opLog{}
	p := newPolicy(t, log)
	p.SetUplinks([]string{"wifi0", "cell0"})
	a := newConn(log, "a", "wifi0", "cell0")
	b := newConn(log, "b", "wifi0")
	p.Add(a, "hub-a")
	p.Add(b, "hub-b")
	log.waitFor(t, "probe a cell0", "probe b cell0")
	settle(t, p)
	p.SetUplinks([]string{"cell0"})
	log.waitFor(t, "switch a cell0", "abandon b")
	settle(t, p)
	noOp(t, log, "abandon a")
}

// TestSwitchForgottenConn: a conn removed (dead) while its switch was
// decided leaves nothing behind.
func TestSwitchForgottenConn(t *testing.T) {
	log := &opLog{}
	p := newPolicy(t, log)
	p.SetUplinks([]string{"wifi0", "cell0"})
	c := newConn(log, "c1", "wifi0")
	c.err = errors.New("gone")
	p.Add(c, "hub")
	p.Remove(c)
	if p.switchTo(c, "cell0", "test") {
		t.Error("switchTo a dead conn = true, want false")
	}
	settle(t, p)
	p.mu.Lock()
	n := len(p.conns)
	p.mu.Unlock()
	if n != 0 {
		t.Errorf("conns kept after Remove: %d, want 0", n)
	}
}

// TestCloseStopsProbes: Close cancels probes under way and waits for them;
// nothing starts afterwards.
func TestCloseStopsProbes(t *testing.T) {
	log := &opLog{}
	ep := &fakeEndpoint{log: log}
	p := New(Config{Endpoint: ep, ProbeTimeout: time.Hour})
	p.SetUplinks([]string{"wifi0", "cell0"})
	c := newConn(log, "c1", "wifi0")
	c.block = true
	p.Add(c, "hub")
	log.waitFor(t, "probe c1 cell0")
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while a probe was under way")
	}
	p.Add(newConn(log, "c2", "wifi0"), "hub")
	noOp(t, log, "probe c2")
}

func TestRank(t *testing.T) {
	usable := []string{"wifi0", "cell0"}
	tests := []struct {
		name string
		want int
	}{{"wifi0", 0}, {"cell0", 1}, {"eth9", 2}, {"", 2}}
	for _, tt := range tests {
		if got := rank(usable, tt.name); got != tt.want {
			t.Errorf("rank(%q, %q) = %d, want %d", usable, tt.name, got, tt.want)
		}
	}
}

// errNoStandby stands for quicconn's "no validated standby path".
var errNoStandby = errors.New("no validated standby path")
