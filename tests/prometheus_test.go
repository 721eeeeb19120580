// SPDX-License-Identifier: MIT

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// The Prometheus lab: Debian's prometheus runs in the hub's namespace,
// scrapes the hub's metrics endpoint (metricsAddr on the hub's loopback)
// every second and evaluates the shipped alert rules every second.
//
//	 ns hub                                            ns s1
//	┌───────────────────────────────────────────┐     ┌──────────┐
//	│ prometheus 127.0.0.1:9090 ──scrape──┐     │     │          │
//	│   rules: packaging/prometheus/      ▼     │     │          │
//	│ godwit (hub) metrics 127.0.0.1:9586       │ up1 │ godwit   │
//	│   gw0 ◀═════ QUIC over 198.18.1.0/24 ═════╪═════╪▶ (site)  │
//	└───────────────────────────────────────────┘     └──────────┘
const (
	promAddr      = "127.0.0.1:9090"
	promRules     = "../packaging/prometheus/godwit-alerts.yml"
	promDashboard = "../packaging/grafana/godwit-dashboard.json"
)

// promLab is a running Prometheus in ns.
type promLab struct {
	ns   *netlab.NS
	http *http.Client
}

// startPrometheus writes a config that scrapes target from inside ns and
// loads the alert rules, starts Debian's prometheus with it and waits for
// it to be ready. The lab stops it and removes its data directory.
func startPrometheus(t *testing.T, l *netlab.Lab, ns *netlab.NS, bin, target string) *promLab {
	t.Helper()
	rules, err := filepath.Abs(promRules)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(l.Dir, "prometheus.yml")
	must(t, os.WriteFile(conf, fmt.Appendf(nil, `global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: godwit
    static_configs:
      - targets: [%q]
`, rules, target), 0o644))
	_, err = ns.Start("prometheus", bin,
		"--config.file="+conf,
		"--storage.tsdb.path="+filepath.Join(l.Dir, "prometheus-data"),
		"--web.listen-address="+promAddr,
		"--log.level=warn")
	must(t, err)
	p := &promLab{ns: ns, http: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, a string) (net.Conn, error) { return ns.DialTCP(ctx, a) },
		},
	}}
	t.Cleanup(p.http.CloseIdleConnections)
	labtest.WaitFor(t, 20*time.Second, "prometheus ready", func() bool {
		resp, err := p.http.Get("http://" + promAddr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// get fetches path from the Prometheus HTTP API and decodes its "data"
// into out; ok is false when the request failed or the API says error.
func (p *promLab) get(t *testing.T, path string, out any) (ok bool, msg string) {
	t.Helper()
	resp, err := p.http.Get("http://" + promAddr + path)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err.Error()
	}
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return false, fmt.Sprintf("%s: %v: %s", resp.Status, err, body)
	}
	if r.Status != "success" {
		return false, fmt.Sprintf("%s: %s", resp.Status, r.Error)
	}
	if err := json.Unmarshal(r.Data, out); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// promSample is one element of an instant vector.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [unix time, "value"]
}

// query runs an instant query and returns its vector.
func (p *promLab) query(t *testing.T, q string) ([]promSample, error) {
	t.Helper()
	var data struct {
		ResultType string       `json:"resultType"`
		Result     []promSample `json:"result"`
	}
	if ok, msg := p.get(t, "/api/v1/query?query="+url.QueryEscape(q), &data); !ok {
		return nil, fmt.Errorf("query %s: %s", q, msg)
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %q, want vector", q, data.ResultType)
	}
	return data.Result, nil
}

// promValue is the value of sample s as text.
func promValue(s promSample) string {
	v, _ := s.Value[1].(string)
	return v
}

// fetchIn returns the body of http://addr/path, fetched from inside ns.
func fetchIn(t *testing.T, ns *netlab.NS, addr, path string) []byte {
	t.Helper()
	c := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, a string) (net.Conn, error) { return ns.DialTCP(ctx, a) },
		},
	}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s%s: %s %v", addr, path, resp.Status, err)
	}
	return b
}

// TestPrometheus runs Debian's Prometheus against a hub with a connected
// site: promtool accepts the alert rules and a real scrape of the hub; the
// HTTP API returns the site's series with the right labels and values;
// every rule evaluates cleanly; every query of the Grafana dashboard
// parses and returns data; and when the site stops, GodwitPeerDown goes
// pending for it, and only for it.
func TestPrometheus(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		labtest.SkipOrFail(t, "prometheus is not installed (apt-get install prometheus): %v", err)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		labtest.SkipOrFail(t, "promtool is not installed (apt-get install prometheus): %v", err)
	}

	tp, _, site := opsLab(t, fmt.Sprintf("metrics_listen = %q", metricsAddr))
	peer := tp.sites[0].name()

	t.Run("promtool", func(t *testing.T) {
		out, err := exec.Command(promtool, "check", "rules", promRules).CombinedOutput()
		if err != nil {
			t.Errorf("promtool check rules %s: %v\n%s", promRules, err, out)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(string(fetchIn(t, tp.hub, metricsAddr, "/metrics")))
		// Exit 0 and no output: promtool prints lint problems and exits 3.
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("promtool check metrics on the hub's /metrics: %v\n%s", err, out)
		}
	})

	p := startPrometheus(t, tp.lab, tp.hub, prom, metricsAddr)
	pings := pingThrough(t, tp)

	// The site's series, from a scrape after the pings.
	var last string
	if !labtest.Eventually(15*time.Second, func() bool {
		r, err := p.query(t, fmt.Sprintf(`godwit_peer_rx_packets_total{job="godwit",peer=%q}`, peer))
		switch {
		case err != nil:
			last = err.Error()
		case len(r) != 1:
			last = fmt.Sprintf("%d series", len(r))
		default:
			last = promValue(r[0])
			var n float64
			_, err := fmt.Sscan(last, &n)
			return err == nil && n >= float64(pings)
		}
		return false
	}) {
		t.Fatalf("godwit_peer_rx_packets_total{peer=%q} after %d pings: %s; want at least the pings", peer, pings, last)
	}
	state, err := p.query(t, fmt.Sprintf(`godwit_peer_state{peer=%q}`, peer))
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]string)
	for _, s := range state {
		if s.Metric["job"] != "godwit" || s.Metric["instance"] != metricsAddr {
			t.Errorf("godwit_peer_state %v: want job godwit, instance %s", s.Metric, metricsAddr)
		}
		got[s.Metric["state"]] = promValue(s)
	}
	if want := map[string]string{"connected": "1", "connecting": "0", "idle": "0"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("godwit_peer_state{peer=%q} by state = %v, want %v", peer, got, want)
	}
	if r, err := p.query(t, fmt.Sprintf(`godwit_path_carrying{peer=%q} == 1`, peer)); err != nil || len(r) != 1 || r[0].Metric["path"] != "default/udp" {
		t.Errorf("carrying path of %s: %v %v, want one series with path default/udp", peer, r, err)
	}

	t.Run("rules", func(t *testing.T) {
		type rule struct {
			Name      string `json:"name"`
			Health    string `json:"health"`
			LastError string `json:"lastError"`
		}
		var rules []rule
		var msg string
		ok := labtest.Eventually(10*time.Second, func() bool {
			var data struct {
				Groups []struct {
					Name  string `json:"name"`
					Rules []rule `json:"rules"`
				} `json:"groups"`
			}
			var ok bool
			if ok, msg = p.get(t, "/api/v1/rules", &data); !ok {
				return false
			}
			rules = nil
			for _, g := range data.Groups {
				if g.Name == "godwit" {
					rules = append(rules, g.Rules...)
				}
			}
			for _, r := range rules {
				if r.Health != "ok" {
					return false
				}
			}
			return len(rules) == 6
		})
		if !ok {
			t.Errorf("rules of group godwit: %+v (%s); want 6, each evaluated with health ok", rules, msg)
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		// rate() and increase() need two samples in their window.
		labtest.WaitFor(t, 10*time.Second, "three scrapes", func() bool {
			r, err := p.query(t, `count_over_time(godwit_info[1m]) >= 3`)
			return err == nil && len(r) == 1
		})
		b, err := os.ReadFile(promDashboard)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string                  `json:"title"`
				Targets []struct{ Expr string } `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		vars := strings.NewReplacer(`"$instance"`, `".*"`, `"$peer"`, `".*"`, `$__rate_interval`, `1m`)
		n := 0
		for _, pn := range d.Panels {
			for _, tg := range pn.Targets {
				n++
				q := vars.Replace(tg.Expr)
				r, err := p.query(t, q)
				switch {
				case err != nil:
					t.Errorf("panel %q: %v", pn.Title, err)
				case len(r) == 0:
					t.Errorf("panel %q: query %s returned no series", pn.Title, q)
				}
			}
		}
		if n == 0 {
			t.Error("no queries in the dashboard")
		}
	})

	// The site goes away: the hub's peer is no longer connected, and the
	// alert goes pending (it fires after 5 minutes).
	site.Stop(t, 10*time.Second)
	var alerts []map[string]any
	if !labtest.Eventually(20*time.Second, func() bool {
		var data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		}
		if ok, _ := p.get(t, "/api/v1/alerts", &data); !ok {
			return false
		}
		alerts = alerts[:0]
		found := false
		for _, a := range data.Alerts {
			alerts = append(alerts, map[string]any{"labels": a.Labels, "state": a.State})
			if a.Labels["alertname"] == "GodwitPeerDown" && a.Labels["peer"] == peer && a.State == "pending" {
				found = true
			}
		}
		return found
	}) {
		t.Fatalf("after the site stopped: alerts %v, want GodwitPeerDown pending for peer %s", alerts, peer)
	}
	for _, a := range alerts {
		if l := a["labels"].(map[string]string); l["peer"] != peer {
			t.Errorf("alert %v for a peer other than the stopped site", a)
		}
	}
}
