// SPDX-License-Identifier: MIT

package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// wait bounds every wait for a datagram; generous for shared machines.
const wait = 5 * time.Second

// echo is a UDP echo server on loopback that remembers what it got.
type echo struct {
	conn *net.UDPConn

	mu   sync.Mutex
	got  []string         // payloads in arrival order
	from []netip.AddrPort // their sources
}

func newEcho(t *testing.T) *echo {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{conn: c}
	labtest.ServeUDP(t, c, func(b []byte, from netip.AddrPort) []byte {
		e.mu.Lock()
		e.got = append(e.got, string(b))
		e.from = append(e.from, from)
		e.mu.Unlock()
		return b
	})
	return e
}

// echoBack is the answer of an echo server: the datagram itself.
func echoBack(b []byte, _ netip.AddrPort) []byte { return b }

func (e *echo) addr() netip.AddrPort { return e.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (e *echo) received() ([]string, []netip.AddrPort) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got), slices.Clone(e.from)
}

// startRelay runs a relay on 127.0.0.1 in front of target until the test
// ends, and checks that Run then returns nil.
func startRelay(t *testing.T, cfg Config) *Relay {
	t.Helper()
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	r, err := New(nil, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	stop := r.Start()
	t.Cleanup(func() {
		if err := stop(wait); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
	return r
}

// dial makes a client socket connected to the relay.
func dial(t *testing.T, r *Relay) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// read returns the next datagram, or "" if none comes within d.
func read(t *testing.T, c *net.UDPConn, d time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return ""
		}
		t.Fatalf("read: %v", err)
	}
	return string(buf[:n])
}

// readN reads datagrams until it has n or none comes within d.
func readN(t *testing.T, c *net.UDPConn, n int, d time.Duration) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		s := read(t, c, d)
		if s == "" {
			break
		}
		got = append(got, s)
	}
	return got
}

func send(t *testing.T, c *net.UDPConn, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatalf("write %q: %v", p, err)
		}
	}
}

func seq(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i+1)
	}
	return out
}

func reversed(s []string) []string {
	s = slices.Clone(s)
	slices.Reverse(s)
	return s
}

func TestNew(t *testing.T) {
	target := netip.MustParseAddrPort("127.0.0.1:9")
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" means success
	}{
		{"ok", Config{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: target}, ""},
		{"no target", Config{Listen: netip.MustParseAddrPort("127.0.0.1:0")}, "relay: no target"},
		{"no listen", Config{Target: target}, "relay: neither a conn nor a listen address"},
		{"negative queue", Config{Target: target, MaxQueued: -1}, "relay: negative limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(nil, tt.cfg)
			var got string
			if err != nil {
				got = err.Error()
			} else {
				r.conn.Close()
			}
			if got != tt.wantErr {
				t.Errorf("New(%+v) error = %q, want %q", tt.cfg, got, tt.wantErr)
			}
		})
	}
}

func TestDirectionString(t *testing.T) {
	for d, want := range map[Direction]string{ToServer: "to-server", ToClient: "to-client", 7: "Direction(7)"} {
		if got := d.String(); got != want {
			t.Errorf("Direction(%d).String() = %q, want %q", int(d), got, want)
		}
	}
}

func TestQueueOrder(t *testing.T) {
	base := time.Now()
	ms := func(n int) time.Time { return base.Add(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name string
		at   []int // release time of each push, in ms after base
		want []int // push indexes in pop order
	}{
		{"constant keeps order", []int{5, 5, 5, 5}, []int{0, 1, 2, 3}},
		{"increasing", []int{1, 2, 3}, []int{0, 1, 2}},
		{"decreasing reverses", []int{30, 20, 10}, []int{2, 1, 0}},
		{"mixed with ties", []int{10, 0, 10, 0}, []int{1, 3, 0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQueue(len(tt.at))
			for i, at := range tt.at {
				if !q.push(ms(at), nil, []byte{byte(i)}) {
					t.Fatalf("push %d refused", i)
				}
			}
			if q.push(ms(0), nil, nil) {
				t.Errorf("push into a full queue accepted")
			}
			if _, wait, ok := q.pop(base.Add(-time.Second)); ok || wait <= 0 {
				t.Errorf("pop before due = ok %v, wait %v; want not ok and a positive wait", ok, wait)
			}
			var got []int
			for {
				it, _, ok := q.pop(ms(1000))
				if !ok {
					break
				}
				got = append(got, int(it.pkt[0]))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("pop order = %v, want %v", got, tt.want)
			}
			if n := q.len(); n != 0 {
				t.Errorf("len after draining = %d, want 0", n)
			}
		})
	}
}

func TestRelayRTT(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration
	}{
		{"no delay", 0},
		{"50ms each way", 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEcho(t)
			r := startRelay(t, Config{Target: e.addr(), Delay: func(Direction, uint64) time.Duration { return tt.delay }})
			c := dial(t, r)
			var rtts []time.Duration
			for i := range 5 {
				p := fmt.Sprintf("ping%d", i)
				start := time.Now()
				send(t, c, p)
				if got := read(t, c, wait); got != p {
					t.Fatalf("echo of %q = %q, want it back", p, got)
				}
				rtts = append(rtts, time.Since(start))
			}
			lo, hi := slices.Min(rtts), 2*tt.delay+time.Second
			if lo < 2*tt.delay || slices.Max(rtts) > hi {
				t.Errorf("RTTs %v, want all in [%v, %v]", rtts, 2*tt.delay, hi)
			}
			// The sender counts a datagram after its write returned, which
			// may be after the echo arrived.
			want := DirStats{Packets: 5, Bytes: 25, Forwarded: 5, ForwardedBytes: 25}
			if !labtest.Eventually(wait, func() bool { st := r.Stats(); return st.ToServer == want && st.ToClient == want }) {
				st := r.Stats()
				t.Errorf("Stats = %+v, want %+v both ways", st, want)
			}
		})
	}
}

func TestRelayDrop(t *testing.T) {
	tests := []struct {
		name        string
		drop        func(dir Direction, n uint64, pkt []byte) bool
		wantSrv     []string // what the server receives
		wantEcho    []string // what comes back
		wantDropped uint64   // to server; to client is the difference of the two lists
	}{
		{"to server by number", func(dir Direction, n uint64, _ []byte) bool { return dir == ToServer && (n == 2 || n == 3) },
			[]string{"p1", "p4", "p5"}, []string{"p1", "p4", "p5"}, 2},
		{"to client by number", func(dir Direction, n uint64, _ []byte) bool { return dir == ToClient && (n == 1 || n == 5) },
			[]string{"p1", "p2", "p3", "p4", "p5"}, []string{"p2", "p3", "p4"}, 0},
		{"by content", func(_ Direction, _ uint64, pkt []byte) bool { return string(pkt) == "p4" },
			[]string{"p1", "p2", "p3", "p5"}, []string{"p1", "p2", "p3", "p5"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEcho(t)
			r := startRelay(t, Config{Target: e.addr(), Drop: tt.drop})
			c := dial(t, r)
			// Loopback keeps order both ways, so packet n is pn.
			send(t, c, "p1", "p2", "p3", "p4", "p5")
			got := readN(t, c, len(tt.wantEcho)+1, 300*time.Millisecond)
			if !slices.Equal(got, tt.wantEcho) {
				t.Errorf("echoes = %v, want %v", got, tt.wantEcho)
			}
			if srv, _ := e.received(); !slices.Equal(srv, tt.wantSrv) {
				t.Errorf("server got %v, want %v", srv, tt.wantSrv)
			}
			st := r.Stats()
			wantToClient := uint64(len(tt.wantSrv) - len(tt.wantEcho))
			if st.ToServer.Dropped != tt.wantDropped || st.ToClient.Dropped != wantToClient {
				t.Errorf("Dropped = %d to server, %d to client; want %d, %d", st.ToServer.Dropped, st.ToClient.Dropped, tt.wantDropped, wantToClient)
			}
		})
	}
}

func TestRelayBlackhole(t *testing.T) {
	e := newEcho(t)
	r := startRelay(t, Config{Target: e.addr()})
	c := dial(t, r)
	send(t, c, "before")
	if got := read(t, c, wait); got != "before" {
		t.Fatalf("echo before blackhole = %q, want %q", got, "before")
	}
	r.SetBlackhole(true)
	send(t, c, "a", "b", "c")
	if got := read(t, c, 300*time.Millisecond); got != "" {
		t.Errorf("echo during blackhole = %q, want nothing", got)
	}
	if st := r.Stats(); st.ToServer.Blackholed != 3 {
		t.Errorf("ToServer.Blackholed = %d, want 3", st.ToServer.Blackholed)
	}
	r.SetBlackhole(false)
	send(t, c, "after")
	if got := read(t, c, wait); got != "after" {
		t.Errorf("echo after blackhole = %q, want %q", got, "after")
	}
	if srv, _ := e.received(); !slices.Equal(srv, []string{"before", "after"}) {
		t.Errorf("server got %v, want [before after]", srv)
	}
}

// TestRelayBlackholeInFlight checks that a datagram which arrived before
// the blackhole but is released during it is discarded.
func TestRelayBlackholeInFlight(t *testing.T) {
	e := newEcho(t)
	r := startRelay(t, Config{Target: e.addr(), Delay: func(Direction, uint64) time.Duration { return 300 * time.Millisecond }})
	c := dial(t, r)
	send(t, c, "x")
	labtest.WaitFor(t, wait, "datagram at the relay", func() bool { return r.Stats().ToServer.Packets == 1 })
	r.SetBlackhole(true)
	if !labtest.Eventually(wait, func() bool { return r.Stats().ToServer.Blackholed == 1 }) {
		t.Fatalf("queued datagram not blackholed at release: %+v", r.Stats())
	}
	if srv, _ := e.received(); len(srv) != 0 {
		t.Errorf("server got %v, want nothing", srv)
	}
}

func TestRelayReplay(t *testing.T) {
	e := newEcho(t)
	r := startRelay(t, Config{Target: e.addr()})
	r.Replay(2, 3, 200*time.Millisecond) // before the client sends: the snapshot is taken later
	c := dial(t, r)
	send(t, c, "i1", "i2", "i3")
	if got := readN(t, c, 3, wait); !slices.Equal(got, []string{"i1", "i2", "i3"}) {
		t.Fatalf("echoes = %v, want [i1 i2 i3]", got)
	}
	if !labtest.Eventually(wait, func() bool { srv, _ := e.received(); return len(srv) == 9 }) {
		srv, _ := e.received()
		t.Fatalf("server got %v, want 3 datagrams and 6 replayed", srv)
	}
	srv, from := e.received()
	if want := []string{"i1", "i2", "i3", "i1", "i2", "i1", "i2", "i1", "i2"}; !slices.Equal(srv, want) {
		t.Errorf("server got %v, want %v", srv, want)
	}
	if from[3] == from[0] {
		t.Errorf("replay came from the client's upstream %v, want a fresh socket", from[0])
	}
	for i := 4; i < 9; i++ {
		if from[i] != from[3] {
			t.Errorf("replayed datagram %d from %v, want %v like the first replayed one", i, from[i], from[3])
		}
	}
	if !labtest.Eventually(wait, func() bool { st := r.Stats(); return st.ReplayReplies == 6 && st.Replayed == 6 }) {
		t.Errorf("Stats = %+v, want Replayed and ReplayReplies 6", r.Stats())
	}
	if st := r.Stats(); st.ToServer.Packets != 3 {
		t.Errorf("ToServer.Packets = %d, want 3: replays are not client datagrams", st.ToServer.Packets)
	}
	if got := read(t, c, 200*time.Millisecond); got != "" {
		t.Errorf("client got %q, want replay replies kept from it", got)
	}
}

func TestRelayOrdering(t *testing.T) {
	const n = 10
	tests := []struct {
		name  string
		delay func(n uint64) time.Duration
		want  []string
	}{
		{"constant delay keeps order", func(uint64) time.Duration { return 20 * time.Millisecond }, seq("o", n)},
		{"decreasing delay reverses", func(i uint64) time.Duration { return time.Duration(n-i) * 40 * time.Millisecond },
			reversed(seq("o", n))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEcho(t)
			r := startRelay(t, Config{Target: e.addr(), Delay: func(dir Direction, i uint64) time.Duration {
				if dir == ToClient {
					return 0
				}
				return tt.delay(i)
			}})
			c := dial(t, r)
			send(t, c, seq("o", n)...)
			if !labtest.Eventually(wait, func() bool { srv, _ := e.received(); return len(srv) == n }) {
				t.Fatalf("server got %d datagrams, want %d", len(e.got), n)
			}
			if srv, _ := e.received(); !slices.Equal(srv, tt.want) {
				t.Errorf("server order %v, want %v", srv, tt.want)
			}
		})
	}
}

func TestRelayPerClientUpstream(t *testing.T) {
	e := newEcho(t)
	r := startRelay(t, Config{Target: e.addr()})
	a, b := dial(t, r), dial(t, r)
	send(t, a, "from-a")
	send(t, b, "from-b")
	if got := read(t, a, wait); got != "from-a" {
		t.Errorf("client a got %q, want from-a", got)
	}
	if got := read(t, b, wait); got != "from-b" {
		t.Errorf("client b got %q, want from-b", got)
	}
	srv, from := e.received()
	if len(from) != 2 || from[0] == from[1] {
		t.Errorf("server saw %v from %v, want two distinct sources", srv, from)
	}
	if n := r.Stats().Clients; n != 2 {
		t.Errorf("Clients = %d, want 2", n)
	}
}

func TestRelayLimits(t *testing.T) {
	e := newEcho(t)
	r := startRelay(t, Config{Target: e.addr(), MaxQueued: 4, MaxClients: 1,
		Delay: func(Direction, uint64) time.Duration { return time.Minute }})
	a, b := dial(t, r), dial(t, r)
	send(t, a, seq("q", 10)...)
	send(t, b, "other")
	if !labtest.Eventually(wait, func() bool { return r.Stats().ToServer.Packets == 11 }) {
		t.Fatalf("relay received %d datagrams, want 11", r.Stats().ToServer.Packets)
	}
	st := r.Stats()
	if st.ToServer.Overflow != 7 || st.Clients != 1 {
		t.Errorf("Stats = %+v, want 6 over the queue cap + 1 over the client cap = 7 overflow, 1 client", st)
	}
}

func TestRelayRunTwice(t *testing.T) {
	e := newEcho(t)
	r := startRelay(t, Config{Target: e.addr()})
	labtest.Eventually(wait, func() bool { return r.running.Load() })
	if err := r.Run(context.Background()); err == nil {
		t.Errorf("second Run = nil, want an error")
	}
}

func TestRelayNoLeak(t *testing.T) {
	e := newEcho(t)
	before := runtime.NumGoroutine()
	r, err := New(nil, Config{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: e.addr(),
		Delay: func(Direction, uint64) time.Duration { return 10 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	a, b := dial(t, r), dial(t, r)
	send(t, a, "a")
	send(t, b, "b")
	if read(t, a, wait) == "" || read(t, b, wait) == "" {
		t.Fatal("no echo through the relay")
	}
	r.Replay(1, 1, 0)
	r.Replay(1, 1, time.Hour) // still waiting when Run stops
	labtest.WaitFor(t, wait, "replayed datagram", func() bool { return r.Stats().Replayed == 1 })
	send(t, a, "queued") // may still be queued at cancel
	if runtime.NumGoroutine() <= before {
		t.Fatalf("goroutines %d while running, want more than %d", runtime.NumGoroutine(), before)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after cancel")
	}
	if !labtest.Eventually(wait, func() bool { return runtime.NumGoroutine() <= before }) {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines %d after Run returned, want <= %d:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
	}
	r.Replay(1, 1, 0) // after Run: a no-op, no goroutine
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines %d after a Replay on a stopped relay, want <= %d", n, before)
	}
}

// TestRelayUnconnectedUpstream covers an Upstream that returns an
// unconnected socket: the relay writes with WriteTo and passes only the
// target's datagrams back, as a NAT would.
func TestRelayUnconnectedUpstream(t *testing.T) {
	e := newEcho(t)
	ups := make(chan *net.UDPConn, 1)
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(ln, Config{Target: e.addr(), Upstream: func(netip.AddrPort) (*net.UDPConn, error) {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err == nil {
			ups <- c
		}
		return c, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	stop := r.Start()
	defer func() {
		if err := stop(wait); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	}()
	c := dial(t, r)
	send(t, c, "one")
	if got := read(t, c, wait); got != "one" {
		t.Fatalf("echo = %q, want %q", got, "one")
	}
	up := <-ups
	stray, err := net.DialUDP("udp", nil, up.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer stray.Close()
	send(t, stray, "stray")
	send(t, c, "two")
	if got := read(t, c, wait); got != "two" {
		t.Errorf("after a stray datagram, echo = %q, want %q", got, "two")
	}
	if got := read(t, c, 200*time.Millisecond); got != "" {
		t.Errorf("client got %q, want the stray datagram filtered", got)
	}
}

// BenchmarkRelayRoundTrip measures one datagram to an echo server and back
// through the relay on loopback, without delay.
func BenchmarkRelayRoundTrip(b *testing.B) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	labtest.ServeUDP(b, srv, echoBack)
	r, err := New(nil, Config{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: srv.LocalAddr().(*net.UDPAddr).AddrPort()})
	if err != nil {
		b.Fatal(err)
	}
	stop := r.Start()
	defer stop(time.Minute)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.Addr()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pkt := make([]byte, 1200)
	buf := make([]byte, 2048)
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := c.Write(pkt); err != nil {
			b.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(wait))
		if _, err := c.Read(buf); err != nil {
			b.Fatalf("no echo: %v", err)
		}
	}
}

// TestRelayServerRestart checks that a client's path survives the server
// being away: writes to a closed port make the connected upstream socket
// report ECONNREFUSED, which must not end its reader.
func TestRelayServerRestart(t *testing.T) {
	gone, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	target := gone.LocalAddr().(*net.UDPAddr)
	gone.Close()
	r := startRelay(t, Config{Target: target.AddrPort()})
	c := dial(t, r)
	for range 3 {
		send(t, c, "nobody")
		time.Sleep(20 * time.Millisecond)
	}
	if !labtest.Eventually(wait, func() bool { return r.Stats().ToServer.Forwarded+r.Stats().ToServer.Errors == 3 }) {
		t.Fatalf("stats %+v, want 3 datagrams written or failed", r.Stats())
	}
	srv, err := net.ListenUDP("udp", target)
	if err != nil {
		t.Fatalf("cannot rebind the server's port %v: %v", target, err)
	}
	labtest.ServeUDP(t, srv, echoBack)
	send(t, c, "back")
	if got := read(t, c, wait); got != "back" {
		t.Errorf("echo after the server came back = %q, want %q", got, "back")
	}
}
