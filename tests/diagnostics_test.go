// SPDX-License-Identifier: MIT

package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// TestQlogAndKeylog runs a hub with qlog_dir and a site with keylog_file:
// the hub writes one qlog file per connection that parses as JSON-SEQ with
// QUIC events, and the site writes TLS secrets Wireshark can use, after a
// loud warning.
func TestQlogAndKeylog(t *testing.T) {
	tp := newTopo(t, 1, false)
	qlogDir := filepath.Join(tp.lab.Dir, "qlog")
	keylog := filepath.Join(tp.lab.Dir, "site.keys")

	hc := tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port))
	hc.extra = []string{fmt.Sprintf("qlog_dir = %q", qlogDir)}
	hub := tp.start(t, tp.hub, hc)
	s := tp.sites[0]
	sc := tp.siteConf(s, false)
	sc.extra = []string{fmt.Sprintf("keylog_file = %q", keylog)}
	site := tp.start(t, s.ns, sc)
	site.WaitConnected(t, "hub")
	hub.WaitConnected(t, s.name())
	hub4, _ := tunAddrs(0)
	if err := s.ns.WaitPing(hub4, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	site.WaitLog(t, 5*time.Second, "WRITING TLS SECRETS")

	keys, err := os.ReadFile(keylog)
	if err != nil {
		t.Fatal(err)
	}
	for _, label := range []string{"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"} {
		if !bytes.Contains(keys, []byte(label)) {
			t.Errorf("key log %s has no %s line:\n%s", keylog, label, keys)
		}
	}
	if fi, err := os.Stat(keylog); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("key log mode = %v, want 0600", fi.Mode().Perm())
	}

	var files []string
	labtest.WaitFor(t, 5*time.Second, "server qlog file in "+qlogDir, func() bool {
		files, _ = filepath.Glob(filepath.Join(qlogDir, "*_server.sqlog"))
		return len(files) > 0
	})
	if !strings.Contains(filepath.Base(files[0]), "_"+s.name()+"_") {
		t.Errorf("qlog file %s does not name the peer %q", files[0], s.name())
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	// JSON-SEQ: records separated by the RS character (0x1e).
	var records, quicEvents int
	for rec := range bytes.SplitSeq(data, []byte{0x1e}) {
		rec = bytes.TrimSpace(rec)
		if len(rec) == 0 {
			continue
		}
		var v map[string]any
		if err := json.Unmarshal(rec, &v); err != nil {
			continue // the last record may be partly written
		}
		records++
		if name, _ := v["name"].(string); strings.HasPrefix(name, "quic:") || strings.HasPrefix(name, "transport:") {
			quicEvents++
		}
	}
	if records < 2 || quicEvents == 0 {
		t.Errorf("qlog %s: %d JSON records, %d QUIC events; want a header and events", files[0], records, quicEvents)
	}
}
