// SPDX-License-Identifier: MIT

package config

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/tunnel/classify"
)

// checkRoundTrip encodes c, parses the result and checks that it is equal
// to c and that encoding again gives the same bytes.
func checkRoundTrip(t *testing.T, c *Config) {
	t.Helper()
	out, err := c.MarshalTOML()
	if err != nil {
		t.Fatalf("MarshalTOML: %v", err)
	}
	c2, err := Parse("again.toml", out)
	if err != nil {
		t.Fatalf("Parse(MarshalTOML()) failed: %v\n%s", err, out)
	}
	if !equalInterface(c.Interface, c2.Interface) {
		t.Errorf("Interface after round trip = %+v, want %+v\n%s", c2.Interface, c.Interface, out)
	}
	if len(c.Peers) != len(c2.Peers) {
		t.Fatalf("%d peers after round trip, want %d\n%s", len(c2.Peers), len(c.Peers), out)
	}
	for i := range c.Peers {
		if !equalPeer(c.Peers[i], c2.Peers[i]) {
			t.Errorf("Peers[%d] after round trip = %+v, want %+v\n%s", i, c2.Peers[i], c.Peers[i], out)
		}
	}
	out2, err := c2.MarshalTOML()
	if err != nil || !bytes.Equal(out, out2) {
		t.Errorf("second MarshalTOML = %q, %v; want %q", out2, err, out)
	}
}

func TestMarshalTOMLRoundTrip(t *testing.T) {
	for _, f := range []string{"testdata/hub.toml", "testdata/site.toml"} {
		t.Run(f, func(t *testing.T) {
			c, err := Parse(f, mustRead(t, f))
			if err != nil {
				t.Fatal(err)
			}
			checkRoundTrip(t, c)
		})
	}
	t.Run("odd strings", func(t *testing.T) {
		c, err := Parse("hub.toml", mustRead(t, "testdata/hub.toml"))
		if err != nil {
			t.Fatal(err)
		}
		c.Interface.PrivateKeyFile = "/etc/godwit/\"odd\" \\ \x01\x7f\t é 鳥.key"
		c.Interface.LogLevel = slog.LevelWarn
		c.Peers[0].Endpoint = "[2001:db8::1]:4433"
		checkRoundTrip(t, c)
	})
	t.Run("multipath keys", func(t *testing.T) {
		for _, pr := range []Peer{
			{},
			{Multipath: MultipathRedundant},
			{Multipath: MultipathRedundant, Redundancy: RedundancyAll},
			{Multipath: MultipathAggregate, Duplicate: mustRules("udp:5004")},
			{Duplicate: mustRules("udp:5004", "tcp:8000-8100", "dscp:0", "192.168.20.0/24", "2001:db8::/32", "::/0")},
		} {
			c, err := Parse("site.toml", mustRead(t, "testdata/site.toml"))
			if err != nil {
				t.Fatal(err)
			}
			p := &c.Peers[0]
			p.Multipath, p.Redundancy, p.Duplicate = pr.Multipath, pr.Redundancy, pr.Duplicate
			checkRoundTrip(t, c)
		}
	})
	t.Run("tcp keys", func(t *testing.T) {
		c, err := Parse("hub.toml", mustRead(t, "testdata/hub.toml"))
		if err != nil {
			t.Fatal(err)
		}
		c.Interface.ListenTCP = "[::]:443"
		checkRoundTrip(t, c)
		c, err = Parse("site.toml", mustRead(t, "testdata/site.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if c.Peers[0].EndpointTCP == "" || c.Peers[0].TCPProxy == "" {
			t.Fatalf("testdata/site.toml has no endpoint_tcp or tcp_proxy: %+v", c.Peers[0])
		}
		checkRoundTrip(t, c)
	})
	t.Run("observability keys", func(t *testing.T) {
		for _, rw := range []time.Duration{0, 1500 * time.Millisecond, 90 * time.Second, MaxReadyWait} {
			c, err := Parse("hub.toml", mustRead(t, "testdata/hub.toml"))
			if err != nil {
				t.Fatal(err)
			}
			c.Interface.MetricsListen = "[::1]:9586"
			c.Interface.QlogDir = "/var/log/godwit/\"q\""
			c.Interface.KeylogFile = "/root/k e y s"
			c.Interface.ReadyWait = rw
			checkRoundTrip(t, c)
		}
	})
}

// TestMarshalTOMLBuilt checks the encoder on a config built in code, as
// `godwit demo` builds them.
func TestMarshalTOMLBuilt(t *testing.T) {
	k, err := key.NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	c := &Config{
		Interface: Interface{PrivateKeyFile: "/run/demo/site.key", Addresses: mustPrefixes("10.77.0.2/24")},
		Peers:     []Peer{{Name: "hub", PublicKey: k.Public(), AllowedIPs: mustPrefixes("10.77.0.0/24"), Endpoint: "127.0.0.1:4433"}},
	}
	c.SetDefaults()
	out, err := c.MarshalTOML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[interface]\nname = \"gw0\"\n", "fwmark = 0x4757\n", "log_level = \"info\"\nready_wait = \"20s\"\n", "\n[[peer]]\nname = \"hub\"\npublic_key = \"" + k.Public().String() + "\"\n",
		"endpoint = \"127.0.0.1:4433\"\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("MarshalTOML() =\n%s\nwant it to contain %q", out, want)
		}
	}
	for _, key := range []string{"listen", "qlog_dir", "keylog_file", "multipath", "redundancy", "duplicate"} {
		if strings.Contains(string(out), key) {
			t.Errorf("MarshalTOML() writes %s although it is empty:\n%s", key, out)
		}
	}
	checkRoundTrip(t, c)
}

func TestMarshalTOMLErrors(t *testing.T) {
	c := &Config{Interface: Interface{PrivateKeyFile: "/k\xff"}}
	if _, err := c.MarshalTOML(); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("MarshalTOML with invalid UTF-8 = %v, want a UTF-8 error", err)
	}
	c = &Config{Interface: Interface{LogLevel: slog.LevelInfo + 2}}
	if _, err := c.MarshalTOML(); err == nil || !strings.Contains(err.Error(), "log level INFO+2") {
		t.Errorf("MarshalTOML with level INFO+2 = %v, want a log level error", err)
	}
	c = &Config{Peers: []Peer{{Name: "hub", Multipath: 5}}}
	if _, err := c.MarshalTOML(); err == nil || err.Error() != `config: peer "hub" multipath Multipath(5) has no name in the file format` {
		t.Errorf("MarshalTOML with Multipath(5) = %v, want a multipath error", err)
	}
	c = &Config{Peers: []Peer{{Name: "hub", Redundancy: 2}}}
	if _, err := c.MarshalTOML(); err == nil || err.Error() != `config: peer "hub" redundancy Redundancy(2) has no name in the file format` {
		t.Errorf("MarshalTOML with Redundancy(2) = %v, want a redundancy error", err)
	}
}

// TestMarshalTOMLInvalid checks that values Validate rejects are written so
// that Parse rejects them too, rather than being dropped.
func TestMarshalTOMLInvalid(t *testing.T) {
	c, err := Parse("hub.toml", mustRead(t, "testdata/hub.toml"))
	if err != nil {
		t.Fatal(err)
	}
	c.Peers[0].Multipath = MultipathRedundant // on a peer without endpoint
	c.Peers[1].Duplicate = []classify.Rule{{}}
	out, err := c.MarshalTOML()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("again.toml", out)
	checkProblems(t, "again.toml", err, []problem{
		{21, `peer "boat-1" multipath is set by the site`},
		{22, `peer "boat-1" redundancy is set by the site`}, // "two", written with redundant
		{28, `peer "field-2" duplicate rule "invalid Rule": not a rule`},
		{28, `peer "field-2" duplicate is set by the site`},
	})
}

func FuzzParse(f *testing.F) {
	for _, file := range []string{"testdata/hub.toml", "testdata/site.toml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, tt := range parseErrorTests {
		f.Add([]byte(tt.in))
	}
	f.Add([]byte(head + peerA + "endpoint = \"[2001:db8::1]:4433\"\n"))
	f.Add([]byte(head + "metrics_listen = \"127.0.0.1:9586\"\nqlog_dir = \"/q\"\nkeylog_file = \"/k\"\nready_wait = \"0s\"\n"))
	f.Add([]byte(site + "multipath = \"redundant\"\nredundancy = \"all\"\nduplicate = [\"udp:5004\", \"tcp:1-2\", \"dscp:46\", \"fd77::/16\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n")) + 1
		c, err := Parse("fuzz.toml", data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config and an error")
			}
			for _, e := range errorsOf(t, err) {
				if e.File != "fuzz.toml" || e.Line < 0 || e.Line > lines || e.Msg == "" {
					t.Fatalf("bad *Error %+v for %d lines of input", e, lines)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate after a successful Parse: %v", err)
		}
		for _, p := range c.Peers {
			for _, pfx := range p.AllowedIPs {
				if pfx != pfx.Masked() {
					t.Fatalf("accepted allowed_ips %v with host bits", pfx)
				}
			}
			if p.Line < 1 || p.Line > lines {
				t.Fatalf("peer %q Line = %d, input has %d lines", p.Name, p.Line, lines)
			}
		}
		checkRoundTrip(t, c)
	})
}
