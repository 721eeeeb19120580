// SPDX-License-Identifier: MIT

package quicconn

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

func TestCountersRecord(t *testing.T) {
	tests := []struct {
		name   string
		events []qlogwriter.Event
		want   string // queueFull tooLarge dos pto maxPacket pathChanges
	}{
		{"nothing", nil, "0 0 0 0 1350 0"},
		{"receive queue full", []qlogwriter.Event{
			qlog.DatagramDropped{Direction: qlog.DirectionReceiving, Trigger: "buffer_full"},
			qlog.DatagramDropped{Direction: qlog.DirectionReceiving, Trigger: "buffer_full"},
		}, "2 0 0 0 1350 0"},
		{"too large on send", []qlogwriter.Event{
			qlog.DatagramDropped{Direction: qlog.DirectionSending, Trigger: "too_large"},
		}, "0 1 0 0 1350 0"},
		{"other datagram drops are not counted", []qlogwriter.Event{
			qlog.DatagramDropped{Direction: qlog.DirectionSending, Trigger: "buffer_full"},
			qlog.DatagramDropped{Direction: qlog.DirectionReceiving, Trigger: "too_large"},
			qlog.DatagramDropped{Trigger: "other"},
		}, "0 0 0 0 1350 0"},
		{"DoS drops only", []qlogwriter.Event{
			qlog.PacketDropped{Trigger: qlog.PacketDropDOSPrevention},
			qlog.PacketDropped{Trigger: qlog.PacketDropDuplicate},
			qlog.PacketDropped{Trigger: qlog.PacketDropDOSPrevention},
		}, "0 0 2 0 1350 0"},
		{"PTO count is current", []qlogwriter.Event{
			qlog.PTOCountUpdated{PTOCount: 1}, qlog.PTOCountUpdated{PTOCount: 3},
		}, "0 0 0 3 1350 0"},
		{"PTO count back to 0", []qlogwriter.Event{
			qlog.PTOCountUpdated{PTOCount: 2}, qlog.PTOCountUpdated{PTOCount: 0},
		}, "0 0 0 0 1350 0"},
		{"MTU raised", []qlogwriter.Event{
			qlog.MTUUpdated{Value: 1400}, qlog.MTUUpdated{Value: 1452, Done: true},
		}, "0 0 0 0 1452 0"},
		{"path change resets MTU", []qlogwriter.Event{
			qlog.MTUUpdated{Value: 1452},
			qlog.TupleAssigned{TupleID: "1"}, // a probed path: not a change yet
			qlog.TupleAssigned{TupleID: ""},
		}, "0 0 0 0 1350 1"},
		{"two path changes", []qlogwriter.Event{
			qlog.TupleAssigned{TupleID: ""}, qlog.MTUUpdated{Value: 1400}, qlog.TupleAssigned{TupleID: ""},
		}, "0 0 0 0 1350 2"},
		{"per-packet events are ignored", []qlogwriter.Event{
			qlog.PacketSent{}, qlog.PacketReceived{}, qlog.MetricsUpdated{}, qlog.PacketLost{},
		}, "0 0 0 0 1350 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &connTrace{}
			tr.maxPacketSize.Store(initialPacketSize)
			r := tr.AddProducer()
			for _, ev := range tt.events {
				r.RecordEvent(ev)
			}
			got := fmt.Sprint(tr.dgramQueueFull.Load(), tr.dgramTooLarge.Load(), tr.dosDrops.Load(),
				tr.pto.Load(), tr.maxPacketSize.Load(), tr.pathChanges.Load())
			if got != tt.want {
				t.Errorf("counters = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCountersNoAlloc checks that counting adds no allocation of its own.
func TestCountersNoAlloc(t *testing.T) {
	tr := &connTrace{}
	r := tr.AddProducer()
	evs := []qlogwriter.Event{
		qlog.PacketSent{}, qlog.DatagramDropped{Direction: qlog.DirectionReceiving, Trigger: "buffer_full"},
		qlog.PacketDropped{Trigger: qlog.PacketDropDOSPrevention}, qlog.MTUUpdated{Value: 1400},
		qlog.TupleAssigned{}, qlog.PTOCountUpdated{PTOCount: 1},
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, ev := range evs {
			r.RecordEvent(ev)
		}
	}); n != 0 {
		t.Errorf("RecordEvent allocates %v times per run, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = tr.AddProducer() }); n != 0 {
		t.Errorf("AddProducer without qlog allocates %v times, want 0", n)
	}
}

func TestQlogName(t *testing.T) {
	tests := []struct{ peer, want string }{
		{"boat-1", "T_boat-1_K_ab_client.sqlog"},
		{"", "T_unknown_K_ab_client.sqlog"},
		{"..", "T_unknown_K_ab_client.sqlog"},
		{"../../etc/passwd", "T_..-..-etc-passwd_K_ab_client.sqlog"},
		{"a_b c", "T_a-b-c_K_ab_client.sqlog"},
		{"é", "T_-_K_ab_client.sqlog"},
		{strings.Repeat("x", 100), "T_" + strings.Repeat("x", 64) + "_K_ab_client.sqlog"},
	}
	for _, tt := range tests {
		if got := qlogName("T", tt.peer, "K", "ab", "client"); got != tt.want {
			t.Errorf("qlogName(%q) = %q, want %q", tt.peer, got, tt.want)
		}
	}
}

// readQlog parses a JSON-SEQ qlog file: records start with 0x1e and each is
// one JSON object. It returns the header and the event names, or an error
// if any record is not JSON (as while the file is still being written).
func readQlog(path string) (header map[string]any, names []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if len(data) == 0 || data[0] != qlogwriter.RecordSeparator {
		return nil, nil, fmt.Errorf("%s does not start with a record separator", path)
	}
	for i, rec := range bytes.Split(data[1:], []byte{qlogwriter.RecordSeparator}) {
		var m map[string]any
		if err := json.Unmarshal(rec, &m); err != nil {
			return nil, nil, fmt.Errorf("record %d: %w", i, err)
		}
		if i == 0 {
			header = m
			continue
		}
		name, _ := m["name"].(string)
		names = append(names, name)
	}
	return header, names, nil
}

func TestQlogFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "qlog") // NewEndpoint creates it
	p := newTestPair(t, func(cli, srv *Config) {
		cli.QlogDir = dir
		srv.QlogDir = dir
		srv.PeerLabel = func(k key.Public) string { return "site-from-config" }
	})
	client, server := p.connect(t)
	exchange(t, client, server, []byte("ping"))
	if err := client.Close("test done"); err != nil {
		t.Fatal(err)
	}
	waitDone(t, server, 5*time.Second)
	p.cli.Close()
	p.srv.Close()

	want := map[string]*regexp.Regexp{
		// The client names the server by its Hello ("hub"), the server
		// names the client by PeerLabel.
		"client": regexp.MustCompile(`^\d{8}T\d{6}\.\d{3}Z_hub_` + regexp.QuoteMeta(qlogKey(p.sk.pub)) + `_([0-9a-f]{16,40})_client\.sqlog$`),
		"server": regexp.MustCompile(`^\d{8}T\d{6}\.\d{3}Z_site-from-config_` + regexp.QuoteMeta(qlogKey(p.ck.pub)) + `_([0-9a-f]{16,40})_server\.sqlog$`),
	}
	// quic-go closes the files from its own goroutines after the
	// connections end: wait until both parse.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var problems []string
		found := map[string]bool{}
		odcid := map[string]string{}
		for _, ent := range ents {
			pers := "server"
			if strings.HasSuffix(ent.Name(), "_client.sqlog") {
				pers = "client"
			}
			m := want[pers].FindStringSubmatch(ent.Name())
			if m == nil {
				t.Fatalf("qlog file %q does not match %v", ent.Name(), want[pers])
			}
			odcid[pers] = m[1]
			found[pers] = true
			hdr, names, err := readQlog(filepath.Join(dir, ent.Name()))
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			if got := hdr["file_schema"]; got != "urn:ietf:params:qlog:file:sequential" {
				t.Errorf("%s: file_schema = %v", ent.Name(), got)
			}
			if vp, _ := hdr["trace"].(map[string]any)["vantage_point"].(map[string]any); vp["type"] != pers {
				t.Errorf("%s: vantage point = %v, want %s", ent.Name(), vp["type"], pers)
			}
			joined := strings.Join(names, " ")
			for _, ev := range []string{"transport:packet_sent", "transport:packet_received", "transport:connection_closed"} {
				if !strings.Contains(joined, ev) {
					problems = append(problems, fmt.Sprintf("%s has no %s event", ent.Name(), ev))
				}
			}
		}
		if len(ents) != 2 || !found["client"] || !found["server"] {
			problems = append(problems, fmt.Sprintf("%d files %v, want one client and one server file", len(ents), found))
		} else if odcid["client"] != odcid["server"] {
			t.Fatalf("client file has connection ID %s, server file %s; want the same", odcid["client"], odcid["server"])
		}
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("qlog files not complete after 10 s: %s", strings.Join(problems, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestQlogDirNotCreatable checks that a bad QlogDir fails NewEndpoint.
func TestQlogDirNotCreatable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := NewEndpoint(Config{PrivateKey: newKey(t).priv, Listen: "127.0.0.1:0", QlogDir: filepath.Join(file, "qlog")})
	if err == nil {
		e.Close()
		t.Fatal("NewEndpoint with QlogDir under a file succeeded")
	}
	if !strings.HasPrefix(err.Error(), "quicconn: qlog dir: ") {
		t.Errorf("error = %q, want a quicconn: qlog dir error", err)
	}
}

// TestStatsReceiveQueueFull lets the server not read while the client
// sends, so quic-go's receive queue overflows and the tracer counts it.
func TestStatsReceiveQueueFull(t *testing.T) {
	p := newTestPair(t, nil)
	client, server := p.connect(t)
	if s := server.Stats(); s.DatagramsDroppedQueueFull != 0 || s.MaxPacketSize < initialPacketSize || s.MaxPacketSize > 1452 {
		t.Fatalf("fresh conn: DatagramsDroppedQueueFull = %d, MaxPacketSize = %d; want 0 and 1350..1452",
			s.DatagramsDroppedQueueFull, s.MaxPacketSize)
	}
	payload := make([]byte, 1000)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
		if err := client.SendDatagram(payload); err != nil {
			t.Fatalf("SendDatagram: %v", err)
		}
		if i%500 == 499 && server.Stats().DatagramsDroppedQueueFull > 0 {
			break
		}
	}
	var got uint64
	for time.Now().Before(deadline) {
		if got = server.Stats().DatagramsDroppedQueueFull; got > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got == 0 {
		t.Fatalf("server DatagramsDroppedQueueFull = 0 after the client sent while the server did not read")
	}
	// Reading drains the 128 queued datagrams; nothing more is dropped.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 128 {
		if _, err := server.ReceiveDatagram(ctx); err != nil {
			t.Fatalf("ReceiveDatagram after the overflow: %v", err)
		}
	}
	if c := client.Stats().DatagramsDroppedQueueFull; c != 0 {
		t.Errorf("client DatagramsDroppedQueueFull = %d, want 0 (it received nothing)", c)
	}
	t.Logf("server dropped %d datagrams (buffer_full)", server.Stats().DatagramsDroppedQueueFull)
}

// TestDisableTracer checks that without the tracer the tracer's fields
// stay zero, and that a QlogDir brings it back.
func TestDisableTracer(t *testing.T) {
	p := newTestPair(t, func(cli, srv *Config) {
		cli.DisableTracer = true
		srv.DisableTracer = true
		srv.QlogDir = t.TempDir()
	})
	client, server := p.connect(t)
	exchange(t, client, server, []byte("ping"))
	if s := client.Stats(); s.MaxPacketSize != 0 || client.trace != nil {
		t.Errorf("client without tracer: MaxPacketSize = %d, trace = %v; want 0, nil", s.MaxPacketSize, client.trace)
	}
	if s := server.Stats(); s.MaxPacketSize < initialPacketSize || server.trace == nil || server.trace.file == nil {
		t.Errorf("server with QlogDir: MaxPacketSize = %d, trace = %v; want >= %d and a qlog file", s.MaxPacketSize, server.trace, initialPacketSize)
	}
}

// TestKeyLog checks that both sides write their TLS secrets in NSS key log
// format, and that they agree.
func TestKeyLog(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) *os.File {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	cf, sf := open("client.keys"), open("server.keys")
	p := newTestPair(t, func(cli, srv *Config) {
		cli.KeyLogWriter = cf
		srv.KeyLogWriter = sf
	})
	client, server := p.connect(t)
	exchange(t, client, server, []byte("ping"))

	secrets := func(name string) map[string]string {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		m := map[string]string{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) != 3 || len(fields[1]) != 64 {
				t.Errorf("%s: line %q is not LABEL <client random> <secret>", name, sc.Text())
				continue
			}
			m[fields[0]+" "+fields[1]] = fields[2]
		}
		return m
	}
	cs, ss := secrets("client.keys"), secrets("server.keys")
	for _, label := range []string{"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} {
		n := 0
		for k, v := range cs {
			if strings.HasPrefix(k, label+" ") {
				n++
				if ss[k] != v {
					t.Errorf("%s: server logged %q, client %q", k, ss[k], v)
				}
			}
		}
		if n != 1 {
			t.Errorf("client key log has %d %s lines, want 1", n, label)
		}
	}
}

// BenchmarkDatagramTracer measures one-way datagram throughput on a
// loopback pair with the always-on counting tracer and without it; the
// difference is what the tracer costs. The receiver runs concurrently and
// counts what arrives; "delivered" is the fraction of sent datagrams that
// arrived (datagrams are unreliable, the sender is not paced), and
// "cpu-ns/op" the process's CPU time (user and system, both endpoints and
// the receiver) per datagram, which is steadier than throughput on a
// shared machine.
func BenchmarkDatagramTracer(b *testing.B) {
	for _, bc := range []struct {
		name    string
		disable bool
	}{{"tracer=on", false}, {"tracer=off", true}} {
		b.Run(bc.name, func(b *testing.B) {
			p := newTestPair(b, func(cli, srv *Config) {
				cli.DisableTracer = bc.disable
				srv.DisableTracer = bc.disable
			})
			client, server := p.connect(b)
			payload := make([]byte, 1200)
			var (
				wg   sync.WaitGroup
				recv int
			)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if _, err := server.ReceiveDatagram(ctx); err != nil {
						return
					}
					recv++
				}
			}()
			b.SetBytes(int64(len(payload)))
			cpu0 := cpuTime(b)
			b.ResetTimer()
			for range b.N {
				if err := client.SendDatagram(payload); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu := cpuTime(b) - cpu0
			// Give the last datagrams a moment, then stop the receiver.
			time.Sleep(50 * time.Millisecond)
			cancel()
			wg.Wait()
			b.ReportMetric(float64(recv)/float64(b.N), "delivered")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime returns the process's user plus system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestTracerSkipsPacketEvents checks what the counting tracer tells
// quic-go: alone it asks not to get the per-packet events, and with a qlog
// file it asks for everything.
func TestTracerSkipsPacketEvents(t *testing.T) {
	tr := &connTrace{}
	if qlogwriter.RecordsPacketEvents(tr.AddProducer()) {
		t.Errorf("counting-only recorder: RecordsPacketEvents = true, want false")
	}
	f, err := createQlog(t.TempDir(), true, quic.ConnectionIDFromBytes([]byte{1, 2, 3, 4, 5, 6, 7, 8}), "p", "k")
	if err != nil {
		t.Fatal(err)
	}
	tr = &connTrace{file: f}
	r := tr.AddProducer()
	if !qlogwriter.RecordsPacketEvents(r) {
		t.Errorf("recorder with a qlog file: RecordsPacketEvents = false, want true")
	}
	r.RecordEvent(qlog.DatagramDropped{Direction: qlog.DirectionReceiving, Trigger: "buffer_full"})
	if got := tr.dgramQueueFull.Load(); got != 1 {
		t.Errorf("counter behind the qlog file = %d, want 1", got)
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestTracerAllocs is the allocation gate of the always-on tracer: one
// datagram there and back to the sender's ReceiveDatagram may allocate
// at most 2 more times with the counting tracer than without a tracer
// (stock quic-go builds every per-packet qlog event: 8 more).
// testing.AllocsPerRun counts the whole process, so both endpoints' quic-go
// goroutines are in it.
func TestTracerAllocs(t *testing.T) {
	perDatagram := func(disable bool) float64 {
		p := newTestPair(t, func(cli, srv *Config) {
			cli.DisableTracer = disable
			srv.DisableTracer = disable
		})
		client, server := p.connect(t)
		defer client.Close("test done")
		payload := make([]byte, 1200)
		lost := 0
		n := testing.AllocsPerRun(1000, func() {
			if err := client.SendDatagram(payload); err != nil {
				t.Fatalf("SendDatagram: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if _, err := server.ReceiveDatagram(ctx); err != nil {
				lost++
			}
			cancel()
		})
		if lost > 10 {
			t.Fatalf("tracer off=%v: %d of 1000 datagrams lost on loopback", disable, lost)
		}
		return n
	}
	on, off := perDatagram(false), perDatagram(true)
	t.Logf("allocations per datagram: %.1f with the counting tracer, %.1f without", on, off)
	if on-off > 2 {
		t.Errorf("counting tracer costs %.1f allocations per datagram (%.1f with, %.1f without), want <= 2", on-off, on, off)
	}
}
