// SPDX-License-Identifier: MIT

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/godwit-vpn/godwit/tests/bench/measure"
	"github.com/godwit-vpn/godwit/tests/bench/measure/measuretest"
)

func TestSummarise(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		name string
		sent int
		rtts []time.Duration
		want pingStats
	}{
		{"none", 5, nil, pingStats{Sent: 5}},
		{"one", 1, ms(7), pingStats{1, 1, 7, 7, 7}},
		{"ten unsorted", 12, ms(10, 1, 9, 2, 8, 3, 7, 4, 6, 5), pingStats{12, 10, 1, 5, 9}},
		{"hundred", 100, ms(func() []int {
			var v []int
			for i := 100; i >= 1; i-- {
				v = append(v, i)
			}
			return v
		}()...), pingStats{100, 100, 1, 50, 90}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summarise(tt.sent, tt.rtts); got != tt.want {
				t.Errorf("summarise(%d, %v) = %+v, want %+v", tt.sent, tt.rtts, got, tt.want)
			}
		})
	}
}

func TestParseRows(t *testing.T) {
	measuretest.CheckParse(t, "parseRows", parseRows, map[string]rowSet{
		defaultRows: {streams: []int{1, 4}, ping: true, impair: []impairment{
			{Key: "loss1", LossPct: 1}, {Key: "loss5", LossPct: 5}, {Key: "tbf100", RateMbit: 100}},
			pinned: []pinnedRow{{Key: "tcp1-cpu1", Streams: 1, CPUs: 1}}},
		"tcp4-cpu2,tcp1-cpu1,tcp4": {streams: []int{4}, pinned: []pinnedRow{{"tcp4-cpu2", 4, 2}, {"tcp1-cpu1", 1, 1}}},
		"tcp1":                     {streams: []int{1}},
		" tcp2 , ping ":            {streams: []int{2}, ping: true},
		"tbf7,loss99":              {impair: []impairment{{Key: "tbf7", RateMbit: 7}, {Key: "loss99", LossPct: 99}}},
		"overtcp-loss2,overtcp":    {overTCP: []tcpPathRow{{Key: "overtcp-loss2", LossPct: 2}, {Key: "overtcp"}}},
	}, []string{
		"overtcp-loss0", "overtcp-loss100", "overtcp-loss", "overtcp-loss01", "overtcp,overtcp", "overtcp1",
		"tcp1-cpu0", "tcp0-cpu1", "tcp1-cpu01", "tcp1-cpu", "udp1-cpu1", "tcp1-cpu1,tcp1-cpu1",
		"", "tcp0", "tcp65", "tcp01", "loss0", "loss100", "tbf", "tcp1,tcp1", "ping,pong",
	})
}

func TestParseFlags(t *testing.T) {
	measuretest.CheckFlags(t, parseFlags, [][]string{
		nil,
		{"-duration", "2s", "-rows", "tcp2", "-json", "-only", "wireguard"},
		{"-profile", "/tmp/p", "-only", "godwit"},
		{"-rounds", "2", "-rows", "tcp1,tcp1-cpu1"},
	}, [][]string{
		{"-profile", "/tmp/p", "-rows", "tcp4,ping"},
		{"-profile", "/tmp/p", "-only", "wireguard"},
		{"-only", "tailscale"},
		{"-duration", "0s"},
		{"-rounds", "0"},
		{"-rounds", "101"},
		{"-rows", fmt.Sprintf("tcp1-cpu%d", runtime.NumCPU())}, // no CPU left for the sender
		{"-pings", "0"},
		{"-rows", "tcp1,bogus"},
		{"extra"},
	})
	o, err := parseFlags(nil, io.Discard)
	if err != nil || o.duration != 10*time.Second || !reflect.DeepEqual(o.rows.streams, []int{1, 4}) || !o.rows.ping ||
		len(o.rows.impair) != 3 || len(o.rows.pinned) != min(runtime.NumCPU()-1, 1) || o.pings != 100 || o.profile != "" || o.rounds != 3 {
		t.Errorf("parseFlags(nil) = %+v, %v; want 10s, tcp1, tcp4, ping, 3 impairments, tcp1-cpu1, 100 pings, no profile, 3 rounds", o, err)
	}
}

// vals makes per-round values; NaN stands for a round without a value.
func vals(v ...float64) []*float64 {
	out := make([]*float64, len(v))
	for i, x := range v {
		if !math.IsNaN(x) {
			out[i] = &x
		}
	}
	return out
}

func TestVerdict(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name       string
		tg         *target
		g, w       []*float64
		want       string
		met, count int
	}{
		{"tcp equal", &targetTCP, vals(100), vals(100), "PASS", 1, 1},
		{"tcp below 1.0", &targetTCP, vals(99), vals(100), "FAIL", 0, 1},
		{"tcp wg zero", &targetTCP, vals(10), vals(0), "PASS", 1, 1}, // inf
		{"impaired equal", &targetImpaired, vals(50), vals(50), "PASS", 1, 1},
		{"impaired below", &targetImpaired, vals(49.9), vals(50), "FAIL", 0, 1},
		{"cpu 1.2x", &targetCPU, vals(12), vals(10), "PASS", 1, 1},
		{"cpu above", &targetCPU, vals(12.1), vals(10), "FAIL", 0, 1},
		{"ping +50us", &targetPing, vals(0.25), vals(0.2), "PASS", 1, 1},
		{"ping +60us", &targetPing, vals(0.26), vals(0.2), "FAIL", 0, 1},
		{"retrans +1%", &targetRetrans, vals(101), vals(100), "PASS", 1, 1},
		{"retrans +2%", &targetRetrans, vals(102), vals(100), "FAIL", 0, 1},
		{"retrans both zero", &targetRetrans, vals(0), vals(0), "PASS", 1, 1},
		{"retrans against zero", &targetRetrans, vals(1), vals(0), "FAIL", 0, 1},
		{"drops zero", &targetDrops, vals(0, 0, 0), nil, "PASS", 3, 3},
		{"drops in one round", &targetDrops, vals(0, 3, 0), vals(9, 9, 9), "FAIL", 2, 3},
		// The median of the per-round ratios (1.1, 0.5, 1.05), not the
		// ratio of the medians (100/100).
		{"tcp median of ratios", &targetTCP, vals(110, 50, 105), vals(100, 100, 100), "PASS", 2, 3},
		{"tcp median of ratios fails", &targetTCP, vals(110, 95, 98), vals(100, 100, 100), "FAIL", 1, 3},
		{"rounds without both", &targetTCP, vals(110, nan, 90), vals(100, 100, nan), "PASS", 1, 1},
		{"missing wg", &targetTCP, vals(1), nil, "", 0, 0},
		{"missing godwit", &targetCPU, nil, vals(1), "", 0, 0},
		{"no target", nil, vals(1), vals(1), "", 0, 0},
	}
	for _, tt := range tests {
		s := summarize([]row{{label: tt.name, unit: "%.1f", g: tt.g, w: tt.w, tgt: tt.tg, round: true}})[0]
		if s.Verdict != tt.want || s.RoundsMet != tt.met || s.RoundsJudged != tt.count {
			t.Errorf("%s: verdict %q, %d of %d rounds met; want %q, %d of %d", tt.name, s.Verdict, s.RoundsMet, s.RoundsJudged, tt.want, tt.met, tt.count)
		}
	}
}

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		in   []float64
		want *spread
	}{
		{nil, nil},
		{[]float64{3}, &spread{3, 3, 3, 1}},
		{[]float64{3, 1}, &spread{2, 1, 3, 2}},
		{[]float64{5, 1, 3}, &spread{3, 1, 5, 3}},
		{[]float64{4, 1, 3, 10}, &spread{3.5, 1, 10, 4}},
		{[]float64{math.Inf(1), 1, 2}, &spread{2, 1, num(math.Inf(1)), 3}},
	}
	for _, tt := range tests {
		if got := spreadOf(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("spreadOf(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	got := summarize([]row{
		{label: "tput", unit: "%.0f", g: vals(90, 200, 100), w: vals(100, 100, 200), round: true},
		{label: "ping", unit: "%.3f", g: vals(0.5, 0.3, nan), w: vals(0.4, 0.4, 0.4), cmp: cmpDiff, round: true},
		{label: "drop", unit: "%.2f", g: vals(4.9), w: vals(5.1), cmp: cmpNone, round: true},
	})
	want := []summaryRow{
		{Label: "tput", Godwit: &spread{100, 90, 200, 3}, WireGuard: &spread{100, 100, 200, 3}, Ratio: &spread{0.9, 0.5, 2, 3}, unit: "%.0f", rounds: 3},
		{Label: "ping", Godwit: &spread{0.4, 0.3, 0.5, 2}, WireGuard: &spread{0.4, 0.4, 0.4, 3}, unit: "%.3f", rounds: 3},
		{Label: "drop", Godwit: &spread{4.9, 4.9, 4.9, 1}, WireGuard: &spread{5.1, 5.1, 5.1, 1}, unit: "%.2f", rounds: 1},
	}
	// The ping differences are 0.1 and -0.1 up to rounding.
	if d := got[1].Diff; d == nil || d.N != 2 || math.Abs(float64(d.Median)) > 1e-9 || math.Abs(float64(d.Min)+0.1) > 1e-9 {
		t.Errorf("ping difference = %+v, want median 0, min -0.1, n 2", d)
	}
	got[1].Diff = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("summarize =\n%+v\nwant\n%+v", got, want)
	}
	for i, wantCols := range [][5]string{
		{"100 (90..200)", "100 (100..200)", "0.90 (0.50..2.00)", "", ""},
		{"0.400 (0.300..0.500) [2 of 3 rounds]", "0.400 (0.400..0.400)", "-", "", ""},
		{"4.90", "5.10", "-", "", ""},
	} {
		if i == 1 {
			continue // the difference was cleared above
		}
		if c := got[i].columns(); c != wantCols {
			t.Errorf("columns of %s = %q, want %q", got[i].Label, c, wantCols)
		}
	}
	s := summarize([]row{{label: "ping", unit: "%.3f", g: vals(0.5, 0.3), w: vals(0.4, 0.45), cmp: cmpDiff, tgt: &targetPing, round: true}})[0]
	if c := s.columns(); c != [5]string{"0.400 (0.300..0.500)", "0.425 (0.400..0.450)", "-0.025 (-0.150..+0.100)", "<= wg + 0.050 ms", "PASS 1/2"} {
		t.Errorf("ping columns = %q", c)
	}
	s = summarize([]row{{label: "retransmits", unit: unitCount, g: vals(106171.1, 5.3), w: vals(0, 0), round: true}})[0]
	if c := s.columns(); c[0] != "53088 (5..106171)" || c[1] != "0.0 (0.0..0.0)" {
		t.Errorf("count columns = %q, want 53088 (5..106171) and 0.0 (0.0..0.0)", c)
	}
	s = summarize([]row{{label: "drops", unit: "%.0f", g: vals(3), w: vals(0), round: true}})[0]
	if c := s.columns(); c[2] != "inf" {
		t.Errorf("ratio against zero = %q, want inf", c[2])
	}
	b, err := json.Marshal(s)
	if err != nil || !strings.Contains(string(b), `"ratio":{"median":"inf","min":"inf","max":"inf","n":1}`) {
		t.Errorf("JSON of an infinite ratio = %s, %v", b, err)
	}
}

func TestParseNftCounters(t *testing.T) {
	out := `table inet gwbchaos {
	chain pre {
		type filter hook prerouting priority raw; policy accept;
		udp dport 4433 counter packets 1000 bytes 1400000
		udp dport 4433 numgen random mod 100 < 5 counter packets 52 bytes 72800 drop
	}
}`
	got, err := parseNftCounters(out)
	if want := []uint64{1000, 52}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseNftCounters = %v, %v; want %v", got, err, want)
	}
	if _, err := parseNftCounters("counter packets x bytes 0"); err == nil {
		t.Error("parseNftCounters with a bad number succeeded, want error")
	}
	rules := nftLossRules("udp", 51820, 5)
	for _, want := range []string{"table inet " + chaosTable, "udp dport 51820 counter\n", "udp dport 51820 numgen random mod 100 < 5 counter drop"} {
		if !strings.Contains(rules, want) {
			t.Errorf("nftLossRules lacks %q:\n%s", want, rules)
		}
	}
}

func TestParseLinkInt(t *testing.T) {
	line := "2: veth0@if2: <BROADCAST,UP> mtu 1500 qdisc noqueue state UP mode DEFAULT\\    link/ether 4a:1e brd ff:ff minmtu 68 maxmtu 65535 veth addrgenmode eui64 numtxqueues 2 gso_max_size 65536 gso_max_segs 65535 tso_max_segs 65535"
	for _, tt := range []struct {
		key  string
		want int
	}{{"mtu", 1500}, {"gso_max_segs", 65535}, {"maxmtu", 65535}} {
		if got, err := parseLinkInt(line, tt.key); err != nil || got != tt.want {
			t.Errorf("parseLinkInt(%q) = %d, %v; want %d", tt.key, got, err, tt.want)
		}
	}
	if _, err := parseLinkInt(line, "gro_max_size"); err == nil {
		t.Error("parseLinkInt of a missing key succeeded, want error")
	}
}

func TestUAPISet(t *testing.T) {
	k := wgKey{priv: make([]byte, 32), pub: make([]byte, 32)}
	k.priv[0], k.pub[31] = 0xab, 0x01
	peerPub := make([]byte, 32)
	peerPub[0] = 0xff
	got := uapiSet(k, 51820, wgPeer{pub: peerPub, allowed: netip.MustParsePrefix("198.19.1.2/32"), endpoint: netip.MustParseAddrPort("198.18.0.1:51820")})
	want := "set=1\nprivate_key=ab" + strings.Repeat("00", 31) + "\nlisten_port=51820\nreplace_peers=true\n" +
		"public_key=ff" + strings.Repeat("00", 31) + "\nendpoint=198.18.0.1:51820\nreplace_allowed_ips=true\nallowed_ip=198.19.1.2/32\n\n"
	if got != want {
		t.Errorf("uapiSet = %q, want %q", got, want)
	}
	got = uapiSet(k, 0, wgPeer{pub: peerPub, allowed: netip.MustParsePrefix("198.19.1.1/32")})
	if strings.Contains(got, "listen_port") || strings.Contains(got, "endpoint") {
		t.Errorf("uapiSet without port and endpoint = %q, want neither key", got)
	}
}

func TestNewWGKey(t *testing.T) {
	a, err := newWGKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := newWGKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.priv) != 32 || len(a.pub) != 32 || reflect.DeepEqual(a.pub, b.pub) {
		t.Errorf("newWGKey: lengths %d/%d, two keys equal %v; want 32/32, false", len(a.priv), len(a.pub), reflect.DeepEqual(a.pub, b.pub))
	}
}

func TestParseUAPIErrno(t *testing.T) {
	parse := func(in string) (int, error) { return parseUAPIErrno(bufio.NewReader(strings.NewReader(in))) }
	measuretest.CheckParse(t, "parseUAPIErrno", parse, map[string]int{
		"errno=0\n\n":                 0,
		"errno=22\n\n":                22,
		"private_key=00\nerrno=0\n\n": 0,
	}, []string{
		"\n",
		"errno=0\n", // no terminating blank line
		"errno=x\n\n",
		"errno=00\n\n",
		"errno=+1\n\n",
		"garbage\n\n",
	})
}

func FuzzParseUAPIErrno(f *testing.F) {
	f.Add("errno=0\n\n")
	f.Add("protocol_version=1\nlisten_port=51820\nerrno=0\n\n")
	f.Add("errno=-1\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := parseUAPIErrno(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		if got < 0 || !strings.Contains(in, "errno="+strconv.Itoa(got)+"\n") || !strings.Contains(in, "\n\n") {
			t.Fatalf("parseUAPIErrno(%q) = %d, accepted without a well-formed errno line", in, got)
		}
	})
}

func TestParseLinkMTU(t *testing.T) {
	measuretest.CheckParse(t, "parseLinkMTU", parseLinkMTU, map[string]int{
		"5: wgb1h: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420 qdisc fq_codel state UNKNOWN mode DEFAULT group default qlen 500\\    link/none": 1420,
		"2: gw0: <UP> mtu 1280 qdisc noop": 1280,
	}, []string{"2: gw0: <UP> qdisc noop", "2: gw0: <UP> mtu", "2: gw0: <UP> mtu -1"})
}

func TestGodwitConfig(t *testing.T) {
	got := godwitConfig("gw1", "/tmp/x/hub.key", "/tmp/x/hub-state", netip.MustParsePrefix("198.19.0.1/24"), 0,
		netip.MustParseAddrPort("198.18.0.1:4433"), "site", "c2l0ZQ==", netip.MustParsePrefix("198.19.0.2/32"), netip.AddrPort{},
		netip.MustParseAddrPort("127.0.0.1:9586"))
	var cfg struct {
		Interface map[string]any
		Peer      []map[string]any
	}
	if _, err := toml.Decode(got, &cfg); err != nil {
		t.Fatalf("godwitConfig output does not parse: %v\n%s", err, got)
	}
	wantIf := map[string]any{"name": "gw1", "private_key_file": "/tmp/x/hub.key", "addresses": []any{"198.19.0.1/24"},
		"state_dir": "/tmp/x/hub-state", "listen": "198.18.0.1:4433", "metrics_listen": "127.0.0.1:9586"}
	wantPeer := []map[string]any{{"name": "site", "public_key": "c2l0ZQ==", "allowed_ips": []any{"198.19.0.2/32"}}}
	if !reflect.DeepEqual(cfg.Interface, wantIf) || !reflect.DeepEqual(cfg.Peer, wantPeer) {
		t.Errorf("godwitConfig decoded to %v %v, want %v %v", cfg.Interface, cfg.Peer, wantIf, wantPeer)
	}
	site := godwitConfig("gw1", "k", "s", netip.MustParsePrefix("198.19.0.2/32"), 1400, netip.AddrPort{}, "hub", "aHVi",
		netip.MustParsePrefix("198.19.0.0/24"), netip.MustParseAddrPort("198.18.0.1:4433"), netip.AddrPort{})
	if strings.Contains(site, "listen") || !strings.Contains(site, `endpoint = "198.18.0.1:4433"`) || !strings.Contains(site, "mtu = 1400\n") {
		t.Errorf("site config = %q, want an endpoint, mtu 1400 and no listen", site)
	}
}

func TestMeasureTCPLoopback(t *testing.T) {
	base := runtime.NumGoroutine()
	var d net.Dialer
	res, err := measureTCP(context.Background(), tcpParams{
		streams: 3,
		warmup:  100 * time.Millisecond,
		dur:     400 * time.Millisecond,
		listen:  func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") },
		dial: func(ctx context.Context, a net.Addr) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", a.String())
		},
		cpu: func() (float64, error) { return measure.ProcCPU(os.Getpid()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Streams != 3 || res.Bytes == 0 || res.Seconds < 0.39 || res.Seconds > 30 || res.Mbps <= 0 {
		t.Errorf("measureTCP = %+v, want 3 streams, bytes > 0, about 0.4 s", res)
	}
	// The sender and sink run in this process, so its CPU time grew.
	if res.CPUSeconds <= 0 || res.CPUPerGB <= 0 {
		t.Errorf("measureTCP CPU = %.3f s, %.3f s/GB, want both > 0", res.CPUSeconds, res.CPUPerGB)
	}
	if want := float64(res.Bytes) * 8 / res.Seconds / 1e6; res.Mbps != want {
		t.Errorf("Mbps = %v, want %v", res.Mbps, want)
	}
	end := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(end) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines after measureTCP, want at most %d", n, base)
	}
}

func TestMeasureTCPCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var d net.Dialer
	start := time.Now()
	_, err := measureTCP(ctx, tcpParams{
		streams: 1,
		dur:     time.Minute,
		listen:  func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") },
		dial: func(ctx context.Context, a net.Addr) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", a.String())
		},
		cpu: func() (float64, error) { return 0, nil },
	})
	if err == nil || time.Since(start) > 20*time.Second {
		t.Errorf("measureTCP with a cancelled ctx = %v after %v, want an error soon", err, time.Since(start))
	}
}

func TestCPUModel(t *testing.T) {
	in := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got, want := cpuModel(strings.NewReader(in)), "AMD EPYC 7B13"; got != want {
		t.Errorf("cpuModel = %q, want %q", got, want)
	}
	if got, want := cpuModel(strings.NewReader("processor : 0\n")), "unknown"; got != want {
		t.Errorf("cpuModel without model name = %q, want %q", got, want)
	}
}

func TestWriteTable(t *testing.T) {
	drop := 4.9
	// Bytes is 1 GB, so counts are per GB.
	tcp := func(row string, mbps, cpu float64, retrans uint64, drops map[string]uint64) tcpResult {
		r := tcpResult{Row: row, Streams: 1, Bytes: 1e9, Mbps: mbps, CPUPerGB: cpu, Retransmits: retrans, RetransPerGB: float64(retrans), Drops: drops}
		for k, v := range drops {
			if inTotal(k) {
				r.DropsPerGB += float64(v)
			}
		}
		return r
	}
	g1 := &result{Name: "Godwit", MTU: 1280, Version: "godwit test",
		TCP: []tcpResult{tcp("tcp1", 500, 8, 10, nil), tcp("tcp4", 600, 6, 0, nil),
			tcp("tcp1-cpu1", 300, 9, 50, map[string]uint64{"hub quic/dos_prevention": 7, "hub udp/rcvbuf_errors": 1}),
			{Row: "loss5", Streams: 1, Mbps: 40, Impairment: "loss5", UnderlayDropPct: &drop}, {Row: "tbf100", Streams: 1, Mbps: 95, Impairment: "tbf100"}},
		PingTunnel: &pingStats{Sent: 100, Received: 99, MinMs: 0.2, MedianMs: 0.4, P90Ms: 0.5},
		PingVeth:   &pingStats{Sent: 100, Received: 100, MinMs: 0.02, MedianMs: 0.1, P90Ms: 0.1},
		Profiles:   []profileTop{{Daemon: "godwit-hub", Kind: "cpu", Sort: "flat", File: "/p/godwit-hub.cpu.pb.gz", Top: "flat  flat%\n"}}}
	g2 := &result{Name: "Godwit", MTU: 1280, Version: "godwit test",
		TCP: []tcpResult{tcp("tcp1", 900, 4, 12, map[string]uint64{"site outbound/queue_full": 3, "hub outbound/no_route": 2}), tcp("tcp4", 700, 5, 0, nil),
			tcp("tcp1-cpu1", 400, 8, 30, map[string]uint64{"hub quic/dos_prevention": 5}),
			{Row: "loss5", Streams: 1, Mbps: 60, Impairment: "loss5", UnderlayDropPct: &drop}, {Row: "tbf100", Streams: 1, Mbps: 93, Impairment: "tbf100"}},
		PingTunnel: &pingStats{Sent: 100, Received: 100, MinMs: 0.2, MedianMs: 0.3, P90Ms: 0.4}}
	w1 := &result{Name: "wireguard-go", MTU: 1420, Version: "wireguard-go test",
		TCP: []tcpResult{tcp("tcp1", 1000, 4, 10, nil), tcp("tcp4", 700, 5, 1, nil),
			tcp("tcp1-cpu1", 350, 5, 40, map[string]uint64{"hub udp/rcvbuf_errors": 20}),
			{Row: "loss5", Streams: 1, Mbps: 50, Impairment: "loss5"}, {Row: "tbf100", Streams: 1, Mbps: 90, Impairment: "tbf100"}},
		PingTunnel: &pingStats{Sent: 100, Received: 100, MinMs: 0.1, MedianMs: 0.2, P90Ms: 0.25}}
	w2 := &result{Name: "wireguard-go", MTU: 1420, Error: "bench: 4 streams: boom\nlog lines",
		TCP: []tcpResult{tcp("tcp1", 800, 4, 11, nil)}}
	rep := &report{
		Machine:  machine{CPU: "Test CPU", NProc: 2, Kernel: "6.1", Go: "go1.26", LoadBefore: "0.10 0.20 0.30", LoadAfter: "1.00 0.50 0.40"},
		Duration: "10s", Warmup: "1s", Streams: []int{1, 4}, Pings: true,
		Impair: []impairment{{Key: "loss5", LossPct: 5}, {Key: "tbf100", RateMbit: 100}},
		Pinned: []pinnedRow{{Key: "tcp1-cpu1", Streams: 1, CPUs: 1}},
		Rounds: []round{
			{Round: 1, Order: []string{"Godwit", "wireguard-go"}, Godwit: g1, WireGuard: w1},
			{Round: 2, Order: []string{"wireguard-go", "Godwit"}, Godwit: g2, WireGuard: w2},
		},
	}
	var b strings.Builder
	writeTable(&b, rep)
	out := b.String()
	for _, want := range []string{
		"machine: Test CPU, nproc 2, kernel 6.1",
		"load average (1, 5, 15 min): 0.10 0.20 0.30 before, 1.00 0.50 0.40 after\n",
		"2 rounds (Godwit, wireguard-go | wireguard-go, Godwit); TCP: 10s measured after 1s warm-up",
		"Godwit: godwit test\n",
		"wireguard-go: round 2 FAILED: bench: 4 streams: boom\n",
		"=== godwit-hub cpu profile, top 25 by flat (/p/godwit-hub.cpu.pb.gz)\nflat  flat%\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// label -> the value columns, target and verdict.
	wantRows := map[string][]string{
		// Ratios 0.5 and 1.125: median 0.8125.
		"TCP 1 stream (Mbit/s)":                                       {"700", "(500..900)", "900", "(800..1000)", "0.81", "(0.50..1.12)", ">=", "1.00x", "FAIL", "1/2"},
		"TCP 4 streams (Mbit/s)":                                      {"650", "(600..700)", "700", "(700..700)", "[1", "of", "2", "rounds]", "0.86", "(0.86..0.86)", "[1", "of", "2", "rounds]", ">=", "1.00x", "FAIL", "0/1"},
		"TCP 1 stream, hub on 1 CPU (Mbit/s)":                         {"350", "(300..400)", "350", "(350..350)", "[1", "of", "2", "rounds]", "0.86", "(0.86..0.86)", "[1", "of", "2", "rounds]"},
		"TCP 1 stream, 5% loss (Mbit/s)":                              {"50", "(40..60)", "50", "(50..50)", "[1", "of", "2", "rounds]", "0.80", "(0.80..0.80)", "[1", "of", "2", "rounds]", ">=", "1.00x", "FAIL", "0/1"},
		"TCP 1 stream, tbf 100 Mbit/s (Mbit/s)":                       {"94", "(93..95)", "90", "(90..90)", "[1", "of", "2", "rounds]", "1.06", "(1.06..1.06)", "[1", "of", "2", "rounds]", ">=", "1.00x", "PASS", "1/1"},
		"CPU s/GB, both daemons, TCP 1 stream":                        {"6.00", "(4.00..8.00)", "4.00", "(4.00..4.00)", "1.50", "(1.00..2.00)", "<=", "1.20x", "FAIL", "1/2"},
		"inner TCP retransmits per GB, TCP 1 stream":                  {"11.0", "(10.0..12.0)", "10.5", "(10.0..11.0)", "1.05", "(1.00..1.09)", "<=", "wg", "+", "1", "%", "FAIL", "1/2"},
		"inner TCP retransmits per GB, TCP 4 streams":                 {"0.0", "(0.0..0.0)", "1.0", "(1.0..1.0)", "[1", "of", "2", "rounds]", "0.00", "(0.00..0.00)", "[1", "of", "2", "rounds]", "<=", "wg", "+", "1", "%", "PASS", "1/1"},
		"drops inside the daemons per GB, TCP 1 stream":               {"1.5", "(0.0..3.0)", "0.0", "(0.0..0.0)", "inf", "(1.00..inf)", "0", "in", "every", "round", "FAIL", "1/2"},
		"drops inside the daemons per GB, TCP 4 streams":              {"0.0", "(0.0..0.0)", "0.0", "(0.0..0.0)", "[1", "of", "2", "rounds]", "1.00", "(1.00..1.00)", "[1", "of", "2", "rounds]", "0", "in", "every", "round", "PASS", "2/2"},
		"drops inside the daemons per GB, TCP 1 stream, hub on 1 CPU": {"6.5", "(5.0..8.0)", "20.0", "(20.0..20.0)", "[1", "of", "2", "rounds]", "0.40", "(0.40..0.40)", "[1", "of", "2", "rounds]"},
		"  tcp1 site outbound/queue_full":                             {"1.5", "(0.0..3.0)", "n/a", "-"},
		"  tcp1 hub outbound/no_route (not in the total)":             {"1.0", "(0.0..2.0)", "n/a", "-"},
		"  tcp1-cpu1 hub quic/dos_prevention":                         {"6.0", "(5.0..7.0)", "n/a", "-"},
		"  tcp1-cpu1 hub udp/rcvbuf_errors":                           {"0.5", "(0.0..1.0)", "20.0", "(20.0..20.0)", "[1", "of", "2", "rounds]", "0.05", "(0.05..0.05)", "[1", "of", "2", "rounds]"},
		"underlay dropped, loss5 rule (%)":                            {"4.90", "(4.90..4.90)", "-", "-"},
		"ping tunnel median of 100 (ms)":                              {"0.350", "(0.300..0.400)", "0.200", "(0.200..0.200)", "[1", "of", "2", "rounds]", "+0.200", "(+0.200..+0.200)", "[1", "of", "2", "rounds]", "<=", "wg", "+", "0.050", "ms", "FAIL", "0/1"},
		"ping tunnel lost (of sent)":                                  {"0", "(0..1)", "0", "(0..0)", "[1", "of", "2", "rounds]", "+1", "(+1..+1)", "[1", "of", "2", "rounds]"},
		"ping veth min (ms)":                                          {"0.020", "(0.020..0.020)", "[1", "of", "2", "rounds]", "-", "-"},
		"inner MTU (default)":                                         {"1280", "1420", "0.90"},
	}
	checkRows(t, out, wantRows)
}

func TestWriteJSON(t *testing.T) {
	rep := &report{Streams: []int{1}, Rounds: []round{{Round: 1, Order: []string{"wireguard-go"},
		WireGuard: &result{Name: "wireguard-go", TCP: []tcpResult{{Row: "tcp1", Streams: 1, Mbps: 1.5, Bytes: 2e9, RetransPerGB: 3}}}}}}
	rep.Summary = summarize(rows(rep))
	var b strings.Builder
	if err := measure.WriteJSON(&b, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"wireguard_go": {`, `"mbit_per_s": 1.5`, `"inner_tcp_retransmits_per_gb": 3`, `"daemon_drops_per_gb": 0`,
		`"label": "TCP 1 stream (Mbit/s)"`, `"round": 1`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("JSON lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), `"godwit"`) {
		t.Errorf("JSON has a godwit entry although it was not measured:\n%s", b.String())
	}
}

// checkRows checks that each label of wantRows starts a line of the table
// out, followed by two spaces and the want columns (split on white space).
func checkRows(t *testing.T, out string, wantRows map[string][]string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		for label, want := range wantRows {
			rest, ok := strings.CutPrefix(line, label+"  ")
			if !ok {
				continue
			}
			if got := strings.Fields(rest); !reflect.DeepEqual(got, want) {
				t.Errorf("row %q = %q, want %q", label, got, want)
			}
			delete(wantRows, label)
		}
	}
	for label := range wantRows {
		t.Errorf("table has no row %q:\n%s", label, out)
	}
}

func TestCPUList(t *testing.T) {
	if got := cpuList(1); got != "0" {
		t.Errorf("cpuList(1) = %q, want 0", got)
	}
	if got := cpuList(3); got != "0-2" {
		t.Errorf("cpuList(3) = %q, want 0-2", got)
	}
	if err := checkPinned(os.Getpid(), "no such list"); err == nil {
		t.Error("checkPinned of this process against a bogus list: no error")
	}
}
