// SPDX-License-Identifier: MIT

package packaging

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

const (
	alertRules      = "prometheus/godwit-alerts.yml"
	alertRulesTests = "prometheus/godwit-alerts_test.yml"
	dashboard       = "grafana/godwit-dashboard.json"
)

// TestAlertRules lints the alert rules with promtool and runs their unit
// tests: every alert fires on series made to cross its threshold, with the
// labels and text an operator would get, and not on healthy ones.
func TestAlertRules(t *testing.T) {
	promtool := requireTool(t, "promtool")
	if out, code := run(t, time.Minute, nil, promtool, "check", "rules", alertRules); code != 0 || !strings.Contains(out, "SUCCESS: 6 rules found") {
		t.Errorf("promtool check rules %s: exit %d, want 0 and 6 rules\n%s", alertRules, code, out)
	}
	out, code := run(t, time.Minute, nil, promtool, "test", "rules", alertRulesTests)
	if code != 0 {
		t.Errorf("promtool test rules %s: exit %d\n%s", alertRulesTests, code, out)
	}
	// Every alert of the file has a test.
	rules, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(alertRulesTests)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: "); ok {
			if !strings.Contains(string(tests), "alertname: "+name+"\n") {
				t.Errorf("%s: alert %s has no test in %s", alertRules, name, alertRulesTests)
			}
		}
	}
}

// grafanaDashboard is the part of a Grafana dashboard the tests read.
type grafanaDashboard struct {
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Schema     int            `json:"schemaVersion"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

// readDashboard parses the shipped dashboard. Grafana is not packaged in
// Debian, so the tests check its JSON; tests/prometheus_test.go runs every
// query against a real Prometheus.
func readDashboard(t *testing.T, path string) *grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &d
}

func TestDashboard(t *testing.T) {
	d := readDashboard(t, dashboard)
	if d.UID != "godwit" || d.Title != "Godwit" || d.Schema < 36 {
		t.Errorf("%s: uid %q, title %q, schemaVersion %d; want godwit, Godwit, >= 36", dashboard, d.UID, d.Title, d.Schema)
	}
	vars := make(map[string]string)
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["instance"] != "query" || vars["peer"] != "query" {
		t.Errorf("%s: template variables %v, want datasource (datasource), instance and peer (query)", dashboard, vars)
	}
	ids := make(map[int]bool)
	graphs := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("%s: panel id %d twice", dashboard, p.ID)
		}
		ids[p.ID] = true
		if g := p.GridPos; g.W < 1 || g.X+g.W > 24 || g.H < 1 {
			t.Errorf("%s: panel %q: gridPos %+v outside the 24 columns", dashboard, p.Title, g)
		}
		if p.Type == "row" {
			continue
		}
		graphs++
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: panel %q does not use the datasource variable", dashboard, p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashboard, p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("%s: panel %q: query %q ignores the instance variable", dashboard, p.Title, tg.Expr)
			}
		}
	}
	if graphs < 10 {
		t.Errorf("%s: %d panels, want at least 10", dashboard, graphs)
	}
}
