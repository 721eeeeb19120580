// SPDX-License-Identifier: MIT

package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/tunnel/classify"
)

// Public keys of the test nodes (seeds are sha256("godwit test key " + name)).
const (
	keyHub  = "u3TMwMO9CAtI3HrXudfFF2cE0qS0W9RDcIOafKUd9tc="
	keyBoat = "ZwyPhg7DAje7FOdyoLVZChx0pm/SfJRH8DzeyFZECVE="
	keyB    = "e+OA5XqizPPYg4eprOdY+4Jt6PlGRz6Vq7rIZxORMro="
	keyC    = "HPWxqXAUHyq0c2Bh4vi4eZi1edD4cijMlUcltiHTxso="
)

// expand replaces KEYA, KEYB and KEYC in a test config.
func expand(s string) string {
	return strings.NewReplacer("KEYA", keyBoat, "KEYB", keyB, "KEYC", keyC).Replace(s)
}

// problem is one expected *Error: its line and a part of its message.
type problem struct {
	line int
	msg  string
}

// errorsOf returns the *Error values joined in err.
func errorsOf(t *testing.T, err error) []*Error {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else if err != nil {
		errs = []error{err}
	}
	var out []*Error
	for _, e := range errs {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("error %q (%T) is not a *Error", e, e)
		}
		out = append(out, ce)
	}
	return out
}

// checkProblems checks that err holds exactly the wanted problems, in order.
func checkProblems(t *testing.T, file string, err error, want []problem) {
	t.Helper()
	got := errorsOf(t, err)
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(want), err)
	}
	for i, w := range want {
		g := got[i]
		if g.File != file || g.Line != w.line || !strings.Contains(g.Msg, w.msg) {
			t.Errorf("problem %d = %q (file %q, line %d), want file %q line %d containing %q", i, g.Error(), g.File, g.Line, file, w.line, w.msg)
		}
		shown := file
		if shown == "" {
			shown = "config"
		}
		prefix := fmt.Sprintf("%s:%d: ", shown, w.line)
		if w.line == 0 {
			prefix = shown + ": "
		}
		if !strings.HasPrefix(g.Error(), prefix) {
			t.Errorf("Error() = %q, want prefix %q", g.Error(), prefix)
		}
	}
}

// iface is an [interface] of three lines without listen.
const iface = `[interface]
private_key_file = "/etc/godwit/gw0.key"
addresses = ["10.77.0.1/24"]
`

// peerA is a valid [[peer]] of four lines (after a blank line) for cases
// about the interface.
var peerA = expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["10.77.0.2/32"]
`)

// peerB is a second valid [[peer]] of four lines (after a blank line).
var peerB = expand(`
[[peer]]
name = "b"
public_key = "KEYB"
allowed_ips = ["10.77.0.3/32"]
`)

// head is a valid [interface] of four lines, for cases about peers.
const head = `[interface]
private_key_file = "/etc/godwit/gw0.key"
addresses = ["10.77.0.1/24"]
listen = ":4433"
`

// site is a valid [interface] with two uplinks (5 lines) and peer "a" with
// an endpoint (6 lines after it), for cases about the multipath keys,
// which start at line 12.
var site = head + "uplinks = [\"wlan0\", \"wwan0\"]\n" + peerA + "endpoint = \"hub.example.net:4433\"\n"

// twoHubs returns two [[peer]] tables, "a" (header at line 6 after head)
// and "b" (line 13), each with an endpoint and the given extra line, that
// share allowed_ips 0.0.0.0/0 (b's can be given instead).
func twoHubs(extraA, extraB string, allowedB ...string) string {
	b := `["0.0.0.0/0"]`
	if len(allowedB) > 0 {
		b = fmt.Sprintf("[%q]", allowedB[0])
	}
	return expand(fmt.Sprintf(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["0.0.0.0/0"]
endpoint = "192.0.2.1:4433"
%s

[[peer]]
name = "b"
public_key = "KEYB"
allowed_ips = %s
endpoint = "192.0.2.2:4433"
%s
`, extraA, b, extraB))
}

// routesOf formats the routes, route_protocol and hold_down of c.
func routesOf(c *Config) string {
	return fmt.Sprint(c.Interface.Routes, c.Interface.RouteProtocol, c.Interface.HoldDown)
}

// prioritiesOf formats each peer's priority and path mode.
func prioritiesOf(c *Config) string {
	var out []string
	for i := range c.Peers {
		p := &c.Peers[i]
		pr := "none"
		if p.HasPriority {
			pr = fmt.Sprint(p.Priority)
		}
		out = append(out, fmt.Sprintf("%s:%s %v", p.Name, pr, c.PathMode(p)))
	}
	return strings.Join(out, " ")
}

// manyRules returns a duplicate array of n distinct UDP port rules.
func manyRules(n int) string {
	rs := make([]string, n)
	for i := range rs {
		rs[i] = fmt.Sprintf("%q", fmt.Sprintf("udp:%d", 5000+i))
	}
	return "duplicate = [" + strings.Join(rs, ", ") + "]\n"
}

var parseErrorTests = []struct {
	name string
	in   string
	want []problem
}{
	{"syntax error", "[interface\nname = \"gw0\"\n", []problem{{1, "invalid TOML at column"}}},
	{"syntax error later", head + "mtu = = 3\n", []problem{{5, "invalid TOML"}}},
	{"wg-quick file", "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.0.0.1/24\n", []problem{{2, "this looks like a wg-quick (WireGuard) file"}}},
	{"duplicate key", head + "mtu = 1300\nmtu = 1400\n", []problem{{6, "invalid TOML"}}},
	{"wrong type", head + "mtu = \"big\"\n", []problem{{5, `[interface] mtu must be an integer, not a string`}}},
	{"float for integer", head + "table = 1.5\n", []problem{{5, `[interface] table must be an integer, not a float`}}},
	{"wrong element type", "[interface]\nprivate_key_file = \"/k\"\naddresses = [\"10.77.0.1/24\", 7]\nlisten = \":1\"\n",
		[]problem{{3, `[interface] addresses[1] must be a string, not an integer`}}},
	{"unknown key in interface", head + "mtuu = 1300\n", []problem{{5, `unknown key "mtuu" in [interface] (did you mean "mtu"?)`}}},
	{"unknown key in interface, dashes", head + "log-level = \"info\"\n", []problem{{5, `unknown key "log-level" in [interface] (did you mean "log_level"?)`}}},
	{"unknown key far from all", head + "colour = \"blue\"\n", []problem{{5, `unknown key "colour" in [interface]`}}},
	{"unknown key in second peer", head + peerA + peerB + "endpont = \"b.example.net:4433\"\n", []problem{{15, `unknown key "endpont" in peer "b" (did you mean "endpoint"?)`}}},
	{"unknown key in unnamed peer", head + expand(`
[[peer]]
public_key = "KEYA"
allowed_ips = ["10.77.0.2/32"]
allowed-ips = ["10.77.0.3/32"]
`), []problem{{6, `[[peer]] #1 is missing name`}, {9, `unknown key "allowed-ips" in [[peer]] #1 (did you mean "allowed_ips"?)`}}},
	{"unknown sub-table of peer", head + peerA + "[peer.extra]\nx = 1\n", []problem{{10, `unknown key "extra" in peer "a"`}}},
	{"unknown top-level table", head + "\n[wireguard]\nx = 1\n", []problem{{6, `unknown top-level table "wireguard"`}}},
	{"unknown top-level table, plural", head + "\n[peers]\n", []problem{{6, `unknown top-level table "peers" (did you mean "peer"?)`}}},
	{"unknown nested top-level table", head + "\n[wg.peer]\nx = 1\n", []problem{{6, `unknown top-level table "wg"`}}},
	{"unknown top-level key", "debug = true\n" + head, []problem{{1, `unknown top-level key "debug"`}}},
	{"peer as a table", head + "[peer]\nname = \"a\"\n", []problem{{5, `peer must be an array of tables ([[peer]] headers), not a table`}}},
	{"interface as an array", "[[interface]]\nname = \"gw0\"\n", []problem{{1, `interface must be a table ([interface]), not an array of tables`}}},
	{"missing interface", expand(`[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["10.77.0.2/32"]
endpoint = "hub.example.net:4433"
`), []problem{{0, "missing [interface] table"}}},
	{"empty file", "", []problem{{0, "missing [interface] table"}}},
	{"missing private_key_file", "\n[interface]\naddresses = [\"10.77.0.1/24\"]\nlisten = \":4433\"\n",
		[]problem{{2, `[interface] is missing private_key_file`}}},
	{"relative private_key_file", "[interface]\nprivate_key_file = \"gw0.key\"\naddresses = [\"10.77.0.1/24\"]\nlisten = \":4433\"\n",
		[]problem{{2, `private_key_file "gw0.key" must be an absolute path`}}},
	{"no addresses key", "[interface]\nprivate_key_file = \"/k\"\nlisten = \":4433\"\n",
		[]problem{{1, `[interface] needs at least one address in addresses`}}},
	{"empty addresses", "[interface]\nprivate_key_file = \"/k\"\naddresses = []\nlisten = \":4433\"\n",
		[]problem{{3, `[interface] needs at least one address in addresses`}}},
	{"address not a prefix", "[interface]\nprivate_key_file = \"/k\"\naddresses = [\"10.77.0.1\"]\nlisten = \":4433\"\n",
		[]problem{{3, `address "10.77.0.1" is not a prefix: write it as 10.77.0.1/32 or with the subnet length, e.g. 10.77.0.1/24`}}},
	{"IPv6 address not a prefix", "[interface]\nprivate_key_file = \"/k\"\naddresses = [\"fd77::1\"]\nlisten = \":4433\"\n",
		[]problem{{3, `address "fd77::1" is not a prefix: write it as fd77::1/128 or with the subnet length, e.g. fd77::1/64`}}},
	{"bad prefix text", "[interface]\nprivate_key_file = \"/k\"\naddresses = [\"10.77.0.300/24\", \"10.77.0.1/33\", \"gw0\"]\nlisten = \":4433\"\n",
		[]problem{{3, `address "10.77.0.300/24" is not a valid prefix`}, {3, `address "10.77.0.1/33" is not a valid prefix`}, {3, `address "gw0" is not a valid prefix`}}},
	{"mtu too big", head + "mtu = 9000\n", []problem{{5, `mtu 9000 is out of range: it must be between 576 and 1500`}}},
	{"mtu too small", head + "mtu = 100\n", []problem{{5, `mtu 100 is out of range: it must be between 576 and 1500`}}},
	{"mtu negative", head + "mtu = -1\n", []problem{{5, `mtu -1 is out of range`}}},
	{"IPv6 with small mtu", "[interface]\nprivate_key_file = \"/k\"\naddresses = [\"10.77.0.1/24\", \"fd77::1/64\"]\nlisten = \":4433\"\nmtu = 1200\n",
		[]problem{{5, `mtu 1200 is too small for the IPv6 address fd77::1/64: IPv6 needs an mtu of at least 1280`}}},
	{"IPv6 allowed_ips with small mtu", head + "mtu = 1200\n" + expand("\n[[peer]]\nname = \"a\"\npublic_key = \"KEYA\"\nallowed_ips = [\"192.0.2.2/32\", \"2001:db8:77::2/128\"]\n"),
		[]problem{{10, `peer "a" allowed_ips 2001:db8:77::2/128 is IPv6, but mtu 1200 is below the 1280 that IPv6 needs: raise mtu to 1280 or leave IPv6 out of allowed_ips`}}},
	{"listen without port", iface + "listen = \"4433\"\n", []problem{{4, `listen "4433" has no port`}}},
	{"listen on a name", iface + "listen = \"hub.example.net:4433\"\n", []problem{{4, `listen "hub.example.net:4433" has host "hub.example.net", which is not an IP address`}}},
	{"listen port 0", iface + "listen = \":0\"\n", []problem{{4, `listen ":0" has port 0, out of range 1..65535`}}},
	{"listen port too big", iface + "listen = \"[::]:65536\"\n", []problem{{4, `listen "[::]:65536" has port 65536, out of range 1..65535`}}},
	{"listen port not a number", iface + "listen = \"0.0.0.0:quic\"\n", []problem{{4, `listen "0.0.0.0:quic" has port "quic", which is not a number`}}},
	{"listen too many colons", iface + "listen = \"::1:4433\"\n", []problem{{4, `listen "::1:4433" is not host:port: too many colons`}}},
	{"ifname too long", head + "name = \"godwit-tunnel-0x\"\n", []problem{{5, `interface name "godwit-tunnel-0x" is not a valid Linux interface name: it is 16 bytes long, at most 15 are allowed`}}},
	{"ifname with slash", head + "name = \"gw/0\"\n", []problem{{5, `interface name "gw/0" is not a valid Linux interface name: '/' is not allowed`}}},
	{"ifname with space", head + "name = \"gw 0\"\n", []problem{{5, `white space is not allowed`}}},
	{"ifname dot dot", head + "name = \"..\"\n", []problem{{5, `"." and ".." are not allowed`}}},
	{"ifname empty", head + "name = \"\"\n", []problem{{5, `interface name "" is not a valid Linux interface name: it is empty`}}},
	{"bad log level", head + "log_level = \"verbose\"\n", []problem{{5, `log_level "verbose" is not one of debug, info, warn, error`}}},
	{"fwmark 0", head + "fwmark = 0\n", []problem{{5, `fwmark 0 is invalid: Godwit's own sockets need a non-zero mark (default 0x4757)`}}},
	{"fwmark too big", head + "fwmark = 0x1_0000_0000\n", []problem{{5, `[interface] fwmark 4294967296 is out of range 0..4294967295`}}},
	{"table main", head + "table = 254\n", []problem{{5, `table 254 is reserved (main); choose 1..0xFFFFFFFE except 253, 254 and 255`}}},
	{"table local", head + "table = 255\n", []problem{{5, `table 255 is reserved (local)`}}},
	{"table default", head + "table = 253\n", []problem{{5, `table 253 is reserved (default)`}}},
	{"table 0", head + "table = 0\n", []problem{{5, `table 0 is out of range: it must be 1..0xFFFFFFFE`}}},
	{"table too big", head + "table = 0xFFFFFFFF\n", []problem{{5, `table 4294967295 is out of range`}}},
	{"relative state_dir", head + "state_dir = \"state\"\n", []problem{{5, `state_dir "state" must be an absolute path`}}},
	{"metrics_listen without port", head + "metrics_listen = \"127.0.0.1\"\n", []problem{{5, `metrics_listen "127.0.0.1" has no port: write it as host:port, e.g. "0.0.0.0:9586", "[::]:9586" or ":9586"`}}},
	{"metrics_listen on a name", head + "metrics_listen = \"localhost:9586\"\n", []problem{{5, `metrics_listen "localhost:9586" has host "localhost", which is not an IP address: give an address of this machine, or none (":9586")`}}},
	{"metrics_listen port 0", head + "metrics_listen = \"127.0.0.1:0\"\n", []problem{{5, `metrics_listen "127.0.0.1:0" has port 0, out of range 1..65535`}}},
	{"metrics_listen not a string", head + "metrics_listen = 9586\n", []problem{{5, `[interface] metrics_listen must be a string, not an integer`}}},
	{"relative qlog_dir", head + "qlog_dir = \"qlog\"\n", []problem{{5, `qlog_dir "qlog" must be an absolute path`}}},
	{"relative keylog_file", head + "keylog_file = \"./keys\"\n", []problem{{5, `keylog_file "./keys" must be an absolute path`}}},
	{"keylog_file not a string", head + "keylog_file = true\n", []problem{{5, `[interface] keylog_file must be a string, not a boolean`}}},
	{"ready_wait integer", head + "ready_wait = 20\n", []problem{{5, `[interface] ready_wait must be a duration string such as "20s", not an integer`}}},
	{"ready_wait no unit", head + "ready_wait = \"20\"\n", []problem{{5, `ready_wait "20" is not a duration: write it like "20s", "1m30s" or "0s"`}}},
	{"ready_wait garbage", head + "ready_wait = \"soon\"\n", []problem{{5, `ready_wait "soon" is not a duration`}}},
	{"ready_wait negative", head + "ready_wait = \"-1s\"\n", []problem{{5, `ready_wait -1s is out of range: it must be between 0s (at once) and 10m0s (default 20s)`}}},
	{"ready_wait too long", head + "ready_wait = \"10m1s\"\n", []problem{{5, `ready_wait 10m1s is out of range`}}},
	{"ready_wait typo", head + "ready_wiat = \"5s\"\n", []problem{{5, `unknown key "ready_wiat" in [interface] (did you mean "ready_wait"?)`}}},
	{"uplinks other string", head + "uplinks = \"all\"\n", []problem{{5, `uplinks "all" must be "any" or an array of interface names`}}},
	{"uplinks integer", head + "uplinks = 2\n", []problem{{5, `[interface] uplinks must be "any" or an array of interface names, not an integer`}}},
	{"uplinks empty", head + "uplinks = []\n", []problem{{5, `uplinks is empty: list at least one interface`}}},
	{"uplinks any in array", head + "uplinks = [\"any\"]\n", []problem{{5, `uplinks entry "any": write uplinks = "any" (a string, not in an array)`}}},
	{"uplinks bad name", head + "uplinks = [\"wlan0\", \"a/b\"]\n", []problem{{5, `uplinks entry "a/b" is not a valid Linux interface name`}}},
	{"uplinks too long", head + "uplinks = [\"abcdefghijklmnop\"]\n", []problem{{5, `uplinks entry "abcdefghijklmnop" is not a valid Linux interface name`}}},
	{"uplinks twice", head + "uplinks = [\"wlan0\", \"wlan0\"]\n", []problem{{5, `uplinks entry "wlan0" is listed twice`}}},
	{"uplinks tun", head + "uplinks = [\"gw0\"]\n", []problem{{5, `uplinks entry "gw0" is the tunnel interface itself`}}},
	{"uplinks non-string", head + "uplinks = [\"wlan0\", 3]\n", []problem{{5, `[interface] uplinks[1] must be a string, not an integer`}}},
	{"keepalive too short", head + "keepalive = \"500ms\"\n", []problem{{5, `keepalive 500ms is out of range: it must be between 1s and 5m0s (default 15s)`}}},
	{"keepalive zero", head + "keepalive = \"0s\"\n", []problem{{5, `keepalive 0s is out of range`}}},
	{"keepalive too long", head + "keepalive = \"6m\"\n", []problem{{5, `keepalive 6m0s is out of range`}}},
	{"keepalive integer", head + "keepalive = 15\n", []problem{{5, `[interface] keepalive must be a duration string such as "20s", not an integer`}}},
	{"new keys all bad", head + "metrics_listen = \":x\"\nqlog_dir = \"q\"\nkeylog_file = \"k\"\nready_wait = \"1h\"\n", []problem{
		{5, `metrics_listen ":x" has port "x", which is not a number`},
		{6, `qlog_dir "q" must be an absolute path`},
		{7, `keylog_file "k" must be an absolute path`},
		{8, `ready_wait 1h0m0s is out of range`},
	}},
	{"peer without name", head + expand(`
[[peer]]
public_key = "KEYA"
allowed_ips = ["10.77.0.2/32"]
`), []problem{{6, `[[peer]] #1 is missing name`}}},
	{"peer with bad name", head + expand(`
[[peer]]
name = "boat 1"
public_key = "KEYA"
allowed_ips = ["10.77.0.2/32"]
`), []problem{{7, `peer name "boat 1" is not valid: use 1 to 64 of the characters A-Z a-z 0-9 . _ -`}}},
	{"duplicate peer names", head + peerA + expand(`
[[peer]]
name = "a"
public_key = "KEYB"
allowed_ips = ["10.77.0.3/32"]
`), []problem{{12, `duplicate peer name "a" (first at line 7)`}}},
	{"peer without public_key", head + `
[[peer]]
name = "a"
allowed_ips = ["10.77.0.2/32"]
`, []problem{{6, `peer "a" is missing public_key`}}},
	{"public_key not base64", head + `
[[peer]]
name = "a"
public_key = "not a key!"
allowed_ips = ["10.77.0.2/32"]
`, []problem{{8, `peer "a" public_key "not a key!" is not a valid key: not standard base64`}}},
	{"public_key wrong length", head + `
[[peer]]
name = "a"
public_key = "AAAAAAAAAAAAAAAAAAAAAA=="
allowed_ips = ["10.77.0.2/32"]
`, []problem{{8, `peer "a" public_key "AAAAAAAAAAAAAAAAAAAAAA==" is not a valid key: decodes to 16 bytes, want 32`}}},
	{"public_key all zeros", head + `
[[peer]]
name = "a"
public_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
allowed_ips = ["10.77.0.2/32"]
`, []problem{{8, `peer "a" public_key is all zeros`}}},
	{"duplicate public keys", head + peerA + expand(`
[[peer]]
name = "b"
public_key = "KEYA"
allowed_ips = ["10.77.0.3/32"]
`), []problem{{13, `peer "b" has the same public_key as peer "a" (line 8)`}}},
	{"allowed_ips empty", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = []
`), []problem{{9, `peer "a" needs at least one prefix in allowed_ips`}}},
	{"allowed_ips missing", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
`), []problem{{6, `peer "a" needs at least one prefix in allowed_ips`}}},
	{"allowed_ips host bits", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["10.77.0.2/32", "192.168.20.1/24"]
`), []problem{{9, `peer "a" allowed_ips entry 192.168.20.1/24 has host bits set (did you mean 192.168.20.0/24?)`}}},
	{"allowed_ips not a prefix", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["10.77.0.2"]
`), []problem{{9, `peer "a" allowed_ips entry "10.77.0.2" is not a prefix: write it as 10.77.0.2/32 for this one address`}}},
	{"allowed_ips overlap", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["10.77.0.2/32", "10.1.2.0/24"]

[[peer]]
name = "b"
public_key = "KEYB"
allowed_ips = [
  "10.77.0.3/32",
  "10.1.0.0/16",
]
`), []problem{{14, `peer "b" allowed_ips 10.1.0.0/16 overlaps 10.1.2.0/24 of peer "a" (line 9)`}}},
	{"IPv4-mapped allowed_ips", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["::ffff:198.18.0.0/112"]
`), []problem{{9, `peer "a" allowed_ips entry ::ffff:198.18.0.0/112 is an IPv4-mapped IPv6 prefix, which the tunnel cannot route: write the IPv4 prefix 198.18.0.0/16`}}},
	{"IPv4-mapped address", strings.Replace(head, `addresses = ["10.77.0.1/24"]`, `addresses = ["10.77.0.1/24", "::ffff:198.18.1.1/120"]`, 1) + peerA,
		[]problem{{3, `address ::ffff:198.18.1.1/120 is an IPv4-mapped IPv6 address, which cannot be set on the interface: write the IPv4 prefix 198.18.1.1/24`}}},
	{"allowed_ips overlap with default route", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["::/0"]

[[peer]]
name = "b"
public_key = "KEYB"
allowed_ips = ["10.77.0.3/32", "fd77::3/128"]
`), []problem{{14, `peer "b" allowed_ips fd77::3/128 overlaps ::/0 of peer "a" (line 9)`}}},
	{"overlap, one without priority", head + twoHubs("priority = 1", ""), []problem{{16, `peer "b" allowed_ips 0.0.0.0/0 overlaps 0.0.0.0/0 of peer "a" (line 9); peers may share allowed_ips only when each sets priority`}}},
	{"overlap, neither with priority", head + twoHubs("", ""), []problem{{16, `peer "b" allowed_ips 0.0.0.0/0 overlaps 0.0.0.0/0 of peer "a" (line 9); peers may share allowed_ips only when each sets priority`}}},
	{"overlap, same priority", head + twoHubs("priority = 2", "priority = 2"), []problem{{18, `peer "b" allowed_ips 0.0.0.0/0 overlaps 0.0.0.0/0 of peer "a" (line 9) and both have priority 2: give them different priorities`}}},
	{"priority out of range", head + twoHubs("priority = 1", "priority = 70000"), []problem{{18, `peer "b" priority 70000 is out of range 0..65535`}}},
	{"priority negative", head + twoHubs("priority = -1", "priority = 1"), []problem{{11, `peer "a" priority -1 is out of range 0..65535`}}},
	{"priority not an integer", head + twoHubs(`priority = "1"`, "priority = 2"), []problem{{11, `peer "a" priority must be an integer, not a string`}}},
	{"priority without endpoint", head + peerA + "priority = 1\n", []problem{{10, `peer "a" priority needs endpoint`}}},
	{"priority with multipath off", head + twoHubs("priority = 1\nmultipath = \"off\"", "priority = 2"), []problem{{12, `peer "a" multipath = "off" cannot go with priority`}}},
	{"routes unknown", head + "routes = \"sometimes\"\n", []problem{{5, `routes "sometimes" is not "always"`}}},
	{"route_protocol kernel", head + "route_protocol = 2\n", []problem{{5, `[interface] route_protocol 2 is out of range 3..255`}}},
	{"route_protocol too large", head + "route_protocol = 256\n", []problem{{5, `[interface] route_protocol 256 is out of range 3..255`}}},
	{"table neither a number nor off", head + "table = \"none\"\n", []problem{{5, `table "none" must be a table number or "off"`}}},
	{"table off with routes connected", head + "table = \"off\"\nroutes = \"connected\"\n", []problem{{6, `routes = "connected" cannot go with table = "off"`}}},
	{"post_up not a string", head + "post_up = 3\n", []problem{{5, `[interface] post_up must be a command string or an array of them`}}},
	{"pre_down empty command", head + "pre_down = [\"ip link\", \" \"]\n", []problem{{5, `pre_down has an empty command`}}},
	{"peer keepalive without endpoint", head + peerA + "keepalive = \"10s\"\n", []problem{{10, `peer "a" keepalive needs endpoint`}}},
	{"peer keepalive out of range", head + peerA + "endpoint = \"hub.example.net:4433\"\nkeepalive = \"10m\"\n", []problem{{11, `peer "a" keepalive 10m0s is out of range`}}},
	{"kill_switch without a full tunnel", head + "kill_switch = true\n" + peerA, []problem{{5, `kill_switch needs a full tunnel`}}},
	{"kill_switch not a boolean", head + "kill_switch = \"yes\"\n", []problem{{5, `[interface] kill_switch must be true or false, not a string`}}},
	{"hold_down negative", head + "hold_down = \"-1s\"\n", []problem{{5, `hold_down -1s is out of range`}}},
	{"hold_down too long", head + "hold_down = \"11m\"\n", []problem{{5, `hold_down 11m0s is out of range`}}},
	{"hold_down not a duration", head + "hold_down = 10\n", []problem{{5, `[interface] hold_down must be a duration string`}}},
	{"allowed_ips twice in one peer", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["10.77.0.2/32", "10.77.0.2/32"]
`), []problem{{9, `peer "a" lists allowed_ips 10.77.0.2/32 twice`}}},
	{"endpoint without port", head + peerA + "endpoint = \"hub.example.net\"\n", []problem{{10, `peer "a" endpoint "hub.example.net" has no port`}}},
	{"endpoint port 0", head + peerA + "endpoint = \"hub.example.net:0\"\n", []problem{{10, `peer "a" endpoint "hub.example.net:0" has port 0, out of range 1..65535`}}},
	{"endpoint port too big", head + peerA + "endpoint = \"[2001:db8::1]:65536\"\n", []problem{{10, `has port 65536, out of range 1..65535`}}},
	{"endpoint bad host", head + peerA + "endpoint = \"hub..example:4433\"\n", []problem{{10, `has host "hub..example", which is neither an IP address nor a valid host name`}}},
	{"endpoint numeric host", head + peerA + "endpoint = \"10.77.0.300:4433\"\n", []problem{{10, `has host "10.77.0.300", which is neither`}}},
	{"endpoint no host", head + peerA + "endpoint = \":4433\"\n", []problem{{10, `peer "a" endpoint ":4433" has no host`}}},
	{"endpoint routing loop", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["10.77.0.2/32", "198.51.100.0/24"]
endpoint = "198.51.100.7:4433"
`), []problem{{10, `peer "a" endpoint 198.51.100.7:4433 lies inside its allowed_ips 198.51.100.0/24: packets to the endpoint would be routed into the tunnel (a routing loop)`}}},
	{"endpoint routing loop IPv6", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["2001:db8::/32"]
endpoint = "[2001:db8::1]:4433"
`), []problem{{10, `routing loop`}}},
	{"listen_tcp without listen", iface + "listen_tcp = \":443\"\n" + peerA + "endpoint = \"hub.example.net:4433\"\n", []problem{{4, `listen_tcp needs listen: the TCP listener is the fallback of the UDP one`}}},
	{"listen_tcp without port", head + "listen_tcp = \"0.0.0.0\"\n", []problem{{5, `listen_tcp "0.0.0.0" has no port: write it as host:port, e.g. "0.0.0.0:443", "[::]:443" or ":443"`}}},
	{"listen_tcp host name", head + "listen_tcp = \"hub.example.net:443\"\n", []problem{{5, `listen_tcp "hub.example.net:443" has host "hub.example.net", which is not an IP address`}}},
	{"listen_tcp port 0", head + "listen_tcp = \":0\"\n", []problem{{5, `listen_tcp ":0" has port 0, out of range 1..65535`}}},
	{"listen_tcp not a string", head + "listen_tcp = 443\n", []problem{{5, `[interface] listen_tcp must be a string, not an integer`}}},
	{"listen_tcp typo", head + "listen_tpc = \":443\"\n", []problem{{5, `unknown key "listen_tpc" in [interface] (did you mean "listen_tcp"?)`}}},
	{"endpoint_tcp without endpoint", head + peerA + "endpoint_tcp = \"hub.example.net:443\"\n", []problem{{10, `peer "a" endpoint_tcp needs endpoint: it is the TCP fallback of the UDP endpoint this node dials`}}},
	{"endpoint_tcp without port", site + "endpoint_tcp = \"hub.example.net\"\n", []problem{{12, `peer "a" endpoint_tcp "hub.example.net" has no port`}}},
	{"endpoint_tcp bad host", site + "endpoint_tcp = \"hub..example:443\"\n", []problem{{12, `peer "a" endpoint_tcp "hub..example:443" has host "hub..example", which is neither an IP address nor a valid host name`}}},
	{"endpoint_tcp not a string", site + "endpoint_tcp = 443\n", []problem{{12, `peer "a" endpoint_tcp must be a string, not an integer`}}},
	{"endpoint_tcp typo", site + "endpoint_tpc = \"hub.example.net:443\"\n", []problem{{12, `unknown key "endpoint_tpc" in peer "a" (did you mean "endpoint_tcp"?)`}}},
	{"endpoint_tcp routing loop", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["10.77.0.2/32", "198.51.100.0/24"]
endpoint = "hub.example.net:4433"
endpoint_tcp = "198.51.100.7:443"
`), []problem{{11, `peer "a" endpoint_tcp 198.51.100.7:443 lies inside its allowed_ips 198.51.100.0/24: packets to the endpoint would be routed into the tunnel (a routing loop)`}}},
	{"endpoint_tcp with multipath off", site + "endpoint_tcp = \"hub.example.net:443\"\nmultipath = \"off\"\n", []problem{{13, `peer "a" multipath = "off" cannot go with endpoint_tcp: the TCP fallback is a second connection of the peer's set`}}},
	{"tcp_proxy without endpoint_tcp", site + "tcp_proxy = \"http://192.0.2.8:3128\"\n", []problem{{12, `peer "a" tcp_proxy needs endpoint_tcp: the proxy is only used to reach the peer over TCP`}}},
	{"tcp_proxy on a peer that dials in", head + peerA + "tcp_proxy = \"http://192.0.2.8:3128\"\n", []problem{{10, `peer "a" tcp_proxy needs endpoint_tcp`}}},
	{"tcp_proxy without scheme", site + "endpoint_tcp = \"hub.example.net:443\"\ntcp_proxy = \"proxy.example:3128\"\n", []problem{{13, `peer "a" tcp_proxy "proxy.example:3128" is not a URL: write it as "http://proxy.example:3128"`}}},
	{"tcp_proxy https", site + "endpoint_tcp = \"hub.example.net:443\"\ntcp_proxy = \"https://proxy.example:3128\"\n", []problem{{13, `peer "a" tcp_proxy "https://proxy.example:3128" has scheme "https": only "http" proxies (with CONNECT) are supported`}}},
	{"tcp_proxy socks", site + "endpoint_tcp = \"hub.example.net:443\"\ntcp_proxy = \"socks5://proxy.example:1080\"\n", []problem{{13, `has scheme "socks5"`}}},
	{"tcp_proxy no host", site + "endpoint_tcp = \"hub.example.net:443\"\ntcp_proxy = \"http://:3128\"\n", []problem{{13, `peer "a" tcp_proxy "http://:3128" has no host`}}},
	{"tcp_proxy path", site + "endpoint_tcp = \"hub.example.net:443\"\ntcp_proxy = \"http://proxy.example:3128/x?y\"\n", []problem{{13, `has a path, query or fragment: a proxy is only http://[user:pass@]host[:port]`}}},
	{"tcp_proxy port 0", site + "endpoint_tcp = \"hub.example.net:443\"\ntcp_proxy = \"http://proxy.example:0\"\n", []problem{{13, `peer "a" tcp_proxy "http://proxy.example:0" has port 0, out of range 1..65535`}}},
	{"tcp_proxy port not a number", site + "endpoint_tcp = \"hub.example.net:443\"\ntcp_proxy = \"http://proxy.example:http\"\n", []problem{{13, `is not a URL`}}},
	{"tcp_proxy empty port", site + "endpoint_tcp = \"hub.example.net:443\"\ntcp_proxy = \"http://proxy.example:\"\n", []problem{{13, `has an empty port`}}},
	{"tcp_proxy bad host", site + "endpoint_tcp = \"hub.example.net:443\"\ntcp_proxy = \"http://proxy..example:3128\"\n", []problem{{13, `has host "proxy..example", which is neither an IP address nor a valid host name`}}},
	{"tcp_proxy password not shown", site + "endpoint_tcp = \"hub.example.net:443\"\ntcp_proxy = \"ftp://user:hunter2@proxy.example:21\"\n", []problem{{13, `"ftp://user:xxxxx@proxy.example:21" has scheme "ftp"`}}},
	{"tcp_proxy routing loop", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["10.77.0.2/32", "192.0.2.0/24"]
endpoint = "hub.example.net:4433"
endpoint_tcp = "hub.example.net:443"
tcp_proxy = "http://u:p@192.0.2.8:3128"
`), []problem{{12, `peer "a" tcp_proxy http://u:xxxxx@192.0.2.8:3128 lies inside its allowed_ips 192.0.2.0/24: packets to the proxy would be routed into the tunnel (a routing loop)`}}},
	{"multipath unknown", site + "multipath = \"fast\"\n", []problem{{12, `peer "a" multipath "fast" is not one of off, failover, redundant, aggregate`}}},
	{"multipath not a string", site + "multipath = 2\n", []problem{{12, `peer "a" multipath must be a string, not an integer`}}},
	{"multipath typo", site + "multipth = \"redundant\"\n", []problem{{12, `unknown key "multipth" in peer "a" (did you mean "multipath"?)`}}},
	{"redundancy unknown", site + "multipath = \"redundant\"\nredundancy = \"3\"\n", []problem{{13, `peer "a" redundancy "3" is not "two" (the two best healthy paths, the default) or "all" (every healthy path)`}}},
	{"redundancy not a string", site + "multipath = \"redundant\"\nredundancy = 2\n", []problem{{13, `peer "a" redundancy must be a string, not an integer`}}},
	{"duplicate with multipath off", site + "multipath = \"off\"\nduplicate = [\"udp:5004\"]\n", []problem{{13, `peer "a" duplicate needs a connection per uplink, but multipath is "off": remove duplicate or multipath`}}},
	{"redundancy without a mode", site + "redundancy = \"all\"\n", []problem{{12, `peer "a" redundancy applies only to multipath = "redundant", but multipath is not set: remove redundancy or set multipath = "redundant"`}}},
	{"redundancy with aggregate", site + "multipath = \"aggregate\"\nredundancy = \"two\"\n", []problem{{13, `peer "a" redundancy applies only to multipath = "redundant", but multipath is "aggregate": remove redundancy or set multipath = "redundant"`}}},
	{"redundancy with a bad mode", site + "multipath = \"redundnat\"\nredundancy = \"all\"\n", []problem{{12, `peer "a" multipath "redundnat" is not one of off, failover, redundant, aggregate`}}},
	{"duplicate bad rules", site + "duplicate = [\"udp:70000\", \"dscp:ef\", \"udp:5004\", \"192.168.20.1/24\"]\n", []problem{
		{12, `peer "a" duplicate rule "udp:70000": port out of range 1-65535`},
		{12, `peer "a" duplicate rule "dscp:ef": DSCP "ef" is not a number: write dscp:46 for EF`},
		{12, `peer "a" duplicate rule "192.168.20.1/24": prefix has host bits set (did you mean 192.168.20.0/24?)`},
	}},
	{"duplicate over lines", site + "duplicate = [\n  \"udp:5004\",  # RTP\n  \"icmp\",\n]\n", []problem{{12, `peer "a" duplicate rule "icmp": there is no icmp rule (duplicated pings would hide the loss they measure); a prefix rule matches ICMP to and from its hosts too`}}},
	{"duplicate a string", site + "duplicate = \"udp:5004\"\n", []problem{{12, `peer "a" duplicate must be an array of rules such as ["udp:5004", "dscp:46"], not a string`}}},
	{"duplicate non-string entry", site + "duplicate = [\"udp:5004\", 46]\n", []problem{{12, `peer "a" duplicate[1] must be a string, not an integer`}}},
	{"duplicate twice", site + "duplicate = [\"udp:5004\", \"dscp:46\", \"UDP:5004-5004\"]\n", []problem{{12, `peer "a" duplicate lists rule udp:5004 twice`}}},
	{"duplicate too many", site + manyRules(65), []problem{{12, `peer "a" duplicate has 65 rules, at most 64 are allowed`}}},
	{"multipath keys on a peer that dials in", head + peerA + "multipath = \"redundant\"\nredundancy = \"all\"\nduplicate = [\"dscp:46\"]\n", []problem{
		{10, `peer "a" multipath is set by the site: without an endpoint this node does not dial the peer and applies the mode the peer announces; set multipath in the peer's own [[peer]] for this node`},
		{11, `peer "a" redundancy is set by the site: without an endpoint this node does not dial the peer`},
		{12, `peer "a" duplicate is set by the site: without an endpoint this node does not dial the peer`},
	}},
	{"failover on a peer that dials in", head + peerA + "multipath = \"failover\"\n", []problem{{10, `peer "a" multipath is set by the site`}}},
	{"empty duplicate on a peer that dials in", head + peerA + "duplicate = []\n", []problem{{10, `peer "a" duplicate is set by the site`}}},
	{"multipath without uplinks", head + peerA + "endpoint = \"hub.example.net:4433\"\nmultipath = \"redundant\"\nduplicate = [\"udp:5004\"]\n", []problem{
		{11, `peer "a" multipath = "redundant" needs at least two uplinks, but [interface] has no uplinks (one socket on the wildcard address): list them, e.g. uplinks = ["wlan0", "wwan0"], or write uplinks = "any"`},
		{12, `peer "a" duplicate needs at least two uplinks, but [interface] has no uplinks (one socket on the wildcard address)`},
	}},
	{"multipath with one uplink", head + "uplinks = [\"wlan0\"]\n" + peerA + "endpoint = \"hub.example.net:4433\"\nmultipath = \"aggregate\"\n", []problem{
		{12, `peer "a" multipath = "aggregate" needs at least two uplinks, but [interface] uplinks lists only "wlan0"`},
	}},
	{"multipath problems of two peers at once", head + "uplinks = [\"wlan0\"]\n" + peerA + `multipath = "aggregate"
redundancy = "all"
` + peerB + `endpoint = "hub.example.net:4433"
multipath = "aggregate"
redundancy = "all"
duplicate = ["udp:5004", "udp:5004", "tcp:0"]
`, []problem{
		{11, `peer "a" multipath is set by the site`},
		{12, `peer "a" redundancy is set by the site`},
		{19, `peer "b" multipath = "aggregate" needs at least two uplinks, but [interface] uplinks lists only "wlan0"`},
		{20, `peer "b" redundancy applies only to multipath = "redundant", but multipath is "aggregate"`},
		{21, `peer "b" duplicate rule "tcp:0": port out of range 1-65535`},
		{21, `peer "b" duplicate lists rule udp:5004 twice`},
		{21, `peer "b" duplicate needs at least two uplinks`},
	}},
	{"nothing connects", iface + peerA, []problem{{0, `nothing could ever connect: [interface] has no listen and no peer has an endpoint`}}},
	{"nothing connects, no peers", iface, []problem{{0, `nothing could ever connect`}}},
	{"everything at once", `[interface]
name = "a/b"
private_key_file = "/k"
addresses = ["10.77.0.1"]
mtu = "big"
endpont = 1

[[peer]]
name = "a"
allowed_ips = ["10.1.0.0/16"]

[[peer]]
name = "a"
public_key = "xx"
allowed_ips = ["10.1.2.0/24", "10.1.2.0/24"]
endpoint = "b"
[peers]
`, []problem{
		{2, `interface name "a/b" is not a valid Linux interface name`},
		{4, `address "10.77.0.1" is not a prefix`},
		{5, `[interface] mtu must be an integer, not a string`},
		{6, `unknown key "endpont" in [interface]`},
		{8, `peer "a" is missing public_key`},
		{13, `duplicate peer name "a" (first at line 9)`},
		{14, `peer "a" public_key "xx" is not a valid key`},
		{15, `peer "a" lists allowed_ips 10.1.2.0/24 twice`},
		{15, `peer "a" allowed_ips 10.1.2.0/24 overlaps 10.1.0.0/16 of peer "a" (line 10)`},
		{16, `peer "a" endpoint "b" has no port`},
		{17, `unknown top-level table "peers"`},
	}},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorTests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("test.toml", []byte(tt.in))
			if err == nil {
				t.Fatalf("Parse = %+v, nil; want %d problems", c, len(tt.want))
			}
			if c != nil {
				t.Errorf("Parse returned a config and an error")
			}
			checkProblems(t, "test.toml", err, tt.want)
		})
	}
}

// TestParseUnnamed checks the message form for bytes without a file name.
func TestParseUnnamed(t *testing.T) {
	_, err := Parse("", []byte(head+"mtu = 9000\n"))
	if got, want := fmt.Sprint(err), "config:5: mtu 9000 is out of range: it must be between 576 and 1500"; got != want {
		t.Errorf("Parse error = %q, want %q", got, want)
	}
	_, err = Parse("", nil)
	if got, want := fmt.Sprint(err), "config: missing [interface] table"; got != want {
		t.Errorf("Parse error = %q, want %q", got, want)
	}
}

func mustPrefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func mustRules(ss ...string) []classify.Rule {
	var out []classify.Rule
	for _, s := range ss {
		out = append(out, classify.MustParseRule(s))
	}
	return out
}

func mustKey(s string) key.Public {
	k, err := key.ParsePublic(s)
	if err != nil {
		panic(err)
	}
	return k
}

func TestParseTestdata(t *testing.T) {
	tests := []struct {
		file  string
		iface Interface
		peers []Peer
	}{
		{
			file: "testdata/hub.toml",
			iface: Interface{
				Name: "gw0", PrivateKeyFile: "/etc/godwit/hub.key",
				Addresses: mustPrefixes("10.77.0.1/24", "fd77::1/64"), Listen: "[::]:4433",
				MTU: 1300, StateDir: DefaultStateDir, FwMark: 0x4757, Table: 18263, LogLevel: slog.LevelInfo,
				ReadyWait: 20 * time.Second, KeepAlive: DefaultKeepAlive, RouteProtocol: DefaultRouteProtocol, HoldDown: DefaultHoldDown,
			},
			peers: []Peer{
				{Name: "boat-1", PublicKey: mustKey(keyBoat), AllowedIPs: mustPrefixes("10.77.0.2/32", "fd77::2/128", "192.168.20.0/24"), Line: 10},
				{Name: "field-2", PublicKey: mustKey(keyB), AllowedIPs: mustPrefixes("10.77.0.3/32", "fd77::3/128", "192.168.30.0/24"), Line: 19},
			},
		},
		{
			file: "testdata/site.toml",
			iface: Interface{
				Name: "gw0", PrivateKeyFile: "/etc/godwit/boat-1.key",
				Addresses: mustPrefixes("10.77.0.2/24", "fd77::2/64"),
				MTU:       1300, StateDir: "/var/lib/godwit", FwMark: 18263, Table: 18263, LogLevel: slog.LevelDebug,
				MetricsListen: "127.0.0.1:9586", QlogDir: "/var/log/godwit/qlog", KeylogFile: "/root/godwit.keys",
				ReadyWait: 90 * time.Second, Uplinks: []string{"wlan0", "wwan0"}, KeepAlive: 20 * time.Second, RouteProtocol: DefaultRouteProtocol, HoldDown: DefaultHoldDown,
			},
			peers: []Peer{
				{Name: "hub", PublicKey: mustKey(keyHub), AllowedIPs: mustPrefixes("0.0.0.0/0", "::/0"), Endpoint: "hub.example.net:4433", Line: 17,
					EndpointTCP: "hub.example.net:443", TCPProxy: "http://user:secret@192.0.2.8:3128",
					Multipath: MultipathAggregate, Duplicate: mustRules("udp:5060", "udp:16384-32767", "dscp:46", "10.77.0.10/32")},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(tt.file, data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.Path != tt.file {
				t.Errorf("Path = %q, want %q", c.Path, tt.file)
			}
			if !equalInterface(c.Interface, tt.iface) {
				t.Errorf("Interface = %+v, want %+v", c.Interface, tt.iface)
			}
			if len(c.Peers) != len(tt.peers) {
				t.Fatalf("got %d peers, want %d", len(c.Peers), len(tt.peers))
			}
			for i := range tt.peers {
				if got, want := c.Peers[i], tt.peers[i]; !equalPeer(got, want) || got.Line != want.Line {
					t.Errorf("Peers[%d] = %+v, want %+v", i, got, want)
				}
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate after Parse: %v", err)
			}
		})
	}
}

// TestParseDefaults checks that missing optional keys get their defaults.
func TestParseDefaults(t *testing.T) {
	c, err := Parse("d.toml", []byte(head))
	if err != nil {
		t.Fatal(err)
	}
	in := c.Interface
	got := fmt.Sprintln(in.Name, in.MTU, in.StateDir, in.FwMark, in.Table, in.LogLevel, len(c.Peers))
	if want := "gw0 1300 /var/lib/godwit 18263 18263 INFO 0\n"; got != want {
		t.Errorf("defaults = %q, want %q", got, want)
	}
}

// TestParseAccepts lists inputs that must parse, with one field to check.
func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name, in, want string
		got            func(*Config) string
	}{
		{"listen wildcard v6", iface + "listen = \"[::]:4433\"\n", "[::]:4433", func(c *Config) string { return c.Interface.Listen }},
		{"listen port only", iface + "listen = \":4433\"\n", ":4433", func(c *Config) string { return c.Interface.Listen }},
		{"log level upper case", head + "log_level = \"WARN\"\n", "WARN", func(c *Config) string { return c.Interface.LogLevel.String() }},
		{"fwmark hex", head + "fwmark = 0x10\n", "16", func(c *Config) string { return fmt.Sprint(c.Interface.FwMark) }},
		{"mtu 1280 with IPv6", "[interface]\nprivate_key_file = \"/k\"\naddresses = [\"fd77::1/64\"]\nlisten = \":1\"\nmtu = 1280\n", "1280", func(c *Config) string { return fmt.Sprint(c.Interface.MTU) }},
		{"mtu 576 with IPv4 only", head + "mtu = 576\n", "576", func(c *Config) string { return fmt.Sprint(c.Interface.MTU) }},
		{"endpoint IPv6 literal", head + peerA + "endpoint = \"[2001:db8::1]:4433\"\n", "[2001:db8::1]:4433", func(c *Config) string { return c.Peers[0].Endpoint }},
		{"endpoint inside default route only", head + expand(`
[[peer]]
name = "a"
public_key = "KEYA"
allowed_ips = ["0.0.0.0/0"]
endpoint = "198.51.100.7:4433"
`), "198.51.100.7:4433", func(c *Config) string { return c.Peers[0].Endpoint }},
		{"site without listen", iface + peerA + "endpoint = \"hub.example.net:4433\"\n", "", func(c *Config) string { return c.Interface.Listen }},
		{"peer header line", head + "\n\n" + peerA, "8", func(c *Config) string { return fmt.Sprint(c.Peers[0].Line) }},
		{"metrics_listen port only", head + "metrics_listen = \":9586\"\n", ":9586", func(c *Config) string { return c.Interface.MetricsListen }},
		{"metrics_listen IPv6", head + "metrics_listen = \"[::1]:9586\"\n", "[::1]:9586", func(c *Config) string { return c.Interface.MetricsListen }},
		{"metrics_listen empty is off", head + "metrics_listen = \"\"\n", "", func(c *Config) string { return c.Interface.MetricsListen }},
		{"qlog_dir", head + "qlog_dir = \"/var/log/godwit/qlog\"\n", "/var/log/godwit/qlog", func(c *Config) string { return c.Interface.QlogDir }},
		{"qlog_dir empty is off", head + "qlog_dir = \"\"\n", "", func(c *Config) string { return c.Interface.QlogDir }},
		{"keylog_file", head + "keylog_file = \"/root/godwit.keys\"\n", "/root/godwit.keys", func(c *Config) string { return c.Interface.KeylogFile }},
		{"ready_wait default", head, "20s", func(c *Config) string { return c.Interface.ReadyWait.String() }},
		{"ready_wait 0s is at once", head + "ready_wait = \"0s\"\n", "0s", func(c *Config) string { return c.Interface.ReadyWait.String() }},
		{"ready_wait 0", head + "ready_wait = \"0\"\n", "0s", func(c *Config) string { return c.Interface.ReadyWait.String() }},
		{"ready_wait ms", head + "ready_wait = \"1500ms\"\n", "1.5s", func(c *Config) string { return c.Interface.ReadyWait.String() }},
		{"ready_wait max", head + "ready_wait = \"10m\"\n", "10m0s", func(c *Config) string { return c.Interface.ReadyWait.String() }},
		{"uplinks absent", head, "[] false", func(c *Config) string { return fmt.Sprint(c.Interface.Uplinks, c.Interface.UplinksAny) }},
		{"uplinks list", head + "uplinks = [\"wlan0\", \"wwan0\"]\n", "[wlan0 wwan0] false", func(c *Config) string { return fmt.Sprint(c.Interface.Uplinks, c.Interface.UplinksAny) }},
		{"uplinks any", head + "uplinks = \"any\"\n", "[] true", func(c *Config) string { return fmt.Sprint(c.Interface.Uplinks, c.Interface.UplinksAny) }},
		{"keepalive default", head, "15s", func(c *Config) string { return c.Interface.KeepAlive.String() }},
		{"keepalive", head + "keepalive = \"25s\"\n", "25s", func(c *Config) string { return c.Interface.KeepAlive.String() }},
		{"keepalive bounds", head + "keepalive = \"1s\"\n", "1s", func(c *Config) string { return c.Interface.KeepAlive.String() }},
		{"multipath not set", site, "default two []", multipathOf},
		{"multipath off", site + "multipath = \"off\"\n", "off two []", multipathOf},
		{"multipath failover without uplinks", head + peerA + "endpoint = \"hub.example.net:4433\"\nmultipath = \"failover\"\n", "failover two []", multipathOf},
		{"multipath redundant", site + "multipath = \"redundant\"\n", "redundant two []", multipathOf},
		{"multipath redundant all", site + "multipath = \"redundant\"\nredundancy = \"all\"\n", "redundant all []", multipathOf},
		{"multipath redundant two", site + "multipath = \"redundant\"\nredundancy = \"two\"\n", "redundant two []", multipathOf},
		{"multipath upper case", site + "multipath = \"Aggregate\"\n", "aggregate two []", multipathOf},
		{"multipath uplinks any", head + "uplinks = \"any\"\n" + peerA + "endpoint = \"hub.example.net:4433\"\nmultipath = \"redundant\"\nduplicate = [\"udp:5004\"]\n", "redundant two [udp:5004]", multipathOf},
		{"duplicate rules", site + "duplicate = [\"udp:5004\", \"TCP:8000-8100\", \"dscp:46\", \"192.168.20.0/24\", \"2001:DB8::/32\"]\n", "default two [udp:5004 tcp:8000-8100 dscp:46 192.168.20.0/24 2001:db8::/32]", multipathOf},
		{"duplicate empty", site + "duplicate = []\n", "default two []", multipathOf},
		{"duplicate 64 rules", site + manyRules(64), "64", func(c *Config) string { return fmt.Sprint(len(c.Peers[0].Duplicate)) }},
		{"duplicate with redundant", site + "multipath = \"redundant\"\nduplicate = [\"dscp:46\"]\n", "redundant two [dscp:46]", multipathOf},
		{"routes default", head, "always 77 10s", routesOf},
		{"kill_switch", head + "kill_switch = true\n" + expand("\n[[peer]]\nname = \"a\"\npublic_key = \"KEYA\"\nallowed_ips = [\"0.0.0.0/0\"]\nendpoint = \"192.0.2.1:4433\"\n"), "true", func(c *Config) string { return fmt.Sprint(c.Interface.KillSwitch) }},
		{"table off", head + "table = \"off\"\n", "true", func(c *Config) string { return fmt.Sprint(c.Interface.TableOff) }},
		{"table off upper case", head + "table = \"Off\"\n", "true", func(c *Config) string { return fmt.Sprint(c.Interface.TableOff) }},
		{"post_up one", head + "post_up = \"nft -f /etc/nft-%i.conf\"\n", "[nft -f /etc/nft-%i.conf] []", func(c *Config) string { return fmt.Sprint(c.Interface.PostUp, c.Interface.PreDown) }},
		{"post_up and pre_down", head + "post_up = [\"a\", \"b\"]\npre_down = [\"c\"]\n", "[a b] [c]", func(c *Config) string { return fmt.Sprint(c.Interface.PostUp, c.Interface.PreDown) }},
		{"peer keepalive", head + peerA + "endpoint = \"hub.example.net:4433\"\nkeepalive = \"5s\"\n", "5s", func(c *Config) string { return c.Peers[0].KeepAlive.String() }},
		{"routes connected", head + "routes = \"connected\"\nroute_protocol = 200\nhold_down = \"0s\"\n", "connected 200 0s", routesOf},
		{"routes always", head + "routes = \"Always\"\nhold_down = \"1m\"\n", "always 77 1m0s", routesOf},
		{"two hubs with priorities", head + twoHubs("priority = 0", "priority = 10"), "a:0 failover b:10 failover", prioritiesOf},
		{"nested prefixes with priorities", head + twoHubs("priority = 5", "priority = 1", "198.51.100.0/24"), "a:5 failover b:1 failover", prioritiesOf},
		{"priority on one hub alone", head + peerA + "endpoint = \"hub.example.net:4433\"\npriority = 3\n", "a:3 failover", prioritiesOf},
		{"listen_tcp", head + "listen_tcp = \"0.0.0.0:443\"\n", "0.0.0.0:443", func(c *Config) string { return c.Interface.ListenTCP }},
		{"listen_tcp same port as listen", head + "listen_tcp = \":4433\"\n", ":4433", func(c *Config) string { return c.Interface.ListenTCP }},
		{"endpoint_tcp", site + "endpoint_tcp = \"[2001:db8::1]:443\"\n", "[2001:db8::1]:443", func(c *Config) string { return c.Peers[0].EndpointTCP }},
		{"tcp_proxy without port", site + "endpoint_tcp = \"hub.example.net:443\"\ntcp_proxy = \"http://proxy.example\"\n", "http://proxy.example", func(c *Config) string { return c.Peers[0].TCPProxy }},
		{"tcp_proxy IPv6 with slash", site + "endpoint_tcp = \"hub.example.net:443\"\ntcp_proxy = \"http://[2001:db8::8]:3128/\"\n", "http://[2001:db8::8]:3128/", func(c *Config) string { return c.Peers[0].TCPProxy }},
		{"endpoint_tcp makes failover without uplinks", head + peerA + "endpoint = \"hub.example.net:4433\"\nendpoint_tcp = \"hub.example.net:443\"\n", "failover", func(c *Config) string { return c.PathMode(&c.Peers[0]).String() }},
		{"endpoint_tcp with explicit failover", head + peerA + "endpoint = \"hub.example.net:4433\"\nendpoint_tcp = \"hub.example.net:443\"\nmultipath = \"failover\"\n", "failover", func(c *Config) string { return c.PathMode(&c.Peers[0]).String() }},
		{"inline peer array", expand(`peer = [{name = "a", public_key = "KEYA", allowed_ips = ["10.77.0.2/32"]}]`) + "\n" + head, "a", func(c *Config) string { return c.Peers[0].Name }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("ok.toml", []byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := tt.got(c); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// multipathOf shows the multipath keys of the first peer.
func multipathOf(c *Config) string {
	p := c.Peers[0]
	return fmt.Sprint(p.Multipath, " ", p.Redundancy, " ", p.Duplicate)
}

func TestConfigPeer(t *testing.T) {
	c, err := Parse("hub.toml", mustRead(t, "testdata/hub.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := c.Peer(mustKey(keyB)); !ok || p.Name != "field-2" {
		t.Errorf("Peer(field-2 key) = %q, %v; want \"field-2\", true", p.Name, ok)
	}
	if p, ok := c.Peer(mustKey(keyC)); ok {
		t.Errorf("Peer(unknown key) = %q, true; want false", p.Name)
	}
}

// TestValidateBuilt checks Validate and SetDefaults on a config built in code.
func TestValidateBuilt(t *testing.T) {
	c := &Config{
		Interface: Interface{PrivateKeyFile: "/k", Addresses: mustPrefixes("10.77.0.1/24")},
		Peers:     []Peer{{Name: "hub", PublicKey: mustKey(keyHub), AllowedIPs: mustPrefixes("10.77.0.0/24"), Endpoint: "192.0.2.1:4433"}},
	}
	checkProblems(t, "", c.Validate(), []problem{
		{0, `interface name "" is not a valid Linux interface name: it is empty`},
		{0, `mtu 0 is out of range`},
		{0, `state_dir is empty`},
		{0, `fwmark 0 is invalid`},
		{0, `table 0 is out of range`},
	})
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("Validate after SetDefaults: %v", err)
	}
	c.Peers[0].AllowedIPs = mustPrefixes("192.0.2.0/24")
	checkProblems(t, "", c.Validate(), []problem{{0, `peer "hub" endpoint 192.0.2.1:4433 lies inside its allowed_ips 192.0.2.0/24`}})
}

// TestValidateBuiltMultipath checks the multipath fields of peers built in
// code, where no key was "written": zero values are the defaults, anything
// else counts as set.
func TestValidateBuiltMultipath(t *testing.T) {
	build := func(uplinks []string, peers ...Peer) *Config {
		c := &Config{Interface: Interface{PrivateKeyFile: "/k", Addresses: mustPrefixes("10.77.0.1/24"), Listen: ":4433", Uplinks: uplinks}}
		c.SetDefaults()
		for i := range peers {
			peers[i].PublicKey = mustKey([]string{keyBoat, keyB, keyC}[i])
			peers[i].AllowedIPs = mustPrefixes(fmt.Sprintf("10.77.0.%d/32", i+2))
		}
		c.Peers = peers
		return c
	}
	two := []string{"wlan0", "wwan0"}
	tests := []struct {
		name string
		c    *Config
		want []problem
	}{
		{"defaults", build(nil, Peer{Name: "hub", Endpoint: "hub.example.net:4433"}, Peer{Name: "site"}), nil},
		{"all set", build(two, Peer{Name: "hub", Endpoint: "hub.example.net:4433", Multipath: MultipathRedundant, Redundancy: RedundancyAll,
			Duplicate: mustRules("udp:5004", "dscp:46")}), nil},
		{"set on a peer that dials in", build(two, Peer{Name: "site", Multipath: MultipathAggregate, Redundancy: RedundancyAll, Duplicate: mustRules("udp:5004")}), []problem{
			{0, `peer "site" multipath is set by the site`},
			{0, `peer "site" redundancy is set by the site`},
			{0, `peer "site" duplicate is set by the site`},
		}},
		{"values without names", build(two, Peer{Name: "hub", Endpoint: "hub.example.net:4433", Multipath: 7, Redundancy: 9}), []problem{
			{0, `peer "hub" multipath Multipath(7) is not one of off, failover, redundant, aggregate`},
			{0, `peer "hub" redundancy Redundancy(9) is not "two" or "all"`},
		}},
		{"redundancy without redundant", build(two, Peer{Name: "hub", Endpoint: "hub.example.net:4433", Redundancy: RedundancyAll}), []problem{
			{0, `peer "hub" redundancy applies only to multipath = "redundant", but multipath is not set`},
		}},
		{"bad rules", build(two, Peer{Name: "hub", Endpoint: "hub.example.net:4433", Duplicate: append(mustRules("udp:5004", "udp:5004"), classify.Rule{})}), []problem{
			{0, `peer "hub" duplicate lists rule udp:5004 twice`},
			{0, `peer "hub" has an invalid rule in duplicate`},
		}},
		{"too many rules", build(two, Peer{Name: "hub", Endpoint: "hub.example.net:4433", Duplicate: make([]classify.Rule, 65)}), func() []problem {
			want := []problem{{0, `peer "hub" duplicate has 65 rules, at most 64 are allowed`}}
			for range 65 {
				want = append(want, problem{0, `peer "hub" has an invalid rule in duplicate`})
			}
			return want
		}()},
		{"one uplink", build([]string{"wlan0"}, Peer{Name: "hub", Endpoint: "hub.example.net:4433", Multipath: MultipathRedundant, Duplicate: mustRules("dscp:46")}), []problem{
			{0, `peer "hub" multipath = "redundant" needs at least two uplinks, but [interface] uplinks lists only "wlan0"`},
			{0, `peer "hub" duplicate needs at least two uplinks, but [interface] uplinks lists only "wlan0"`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkProblems(t, "", tt.c.Validate(), tt.want)
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// equalInterface and equalPeer keep the tests' calls short.
func equalInterface(a, b Interface) bool { return a.Equal(b) }
func equalPeer(a, b Peer) bool           { return a.Equal(b) }

func TestInterfaceEqual(t *testing.T) {
	c, err := Parse("site.toml", mustRead(t, "testdata/site.toml"))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Interface
	tests := []struct {
		name   string
		change func(in *Interface)
		want   bool
	}{
		{"same", func(in *Interface) {}, true},
		{"other position", func(in *Interface) { in.pos = position{} }, true},
		{"other name", func(in *Interface) { in.Name = "gw1" }, false},
		{"other key", func(in *Interface) { in.PrivateKey[0] ^= 1 }, false},
		{"other addresses", func(in *Interface) { in.Addresses = mustPrefixes("10.77.0.2/24") }, false},
		{"other listen", func(in *Interface) { in.Listen = ":1" }, false},
		{"other listen_tcp", func(in *Interface) { in.ListenTCP = ":443" }, false},
		{"other mtu", func(in *Interface) { in.MTU = 1280 }, false},
		{"other log level", func(in *Interface) { in.LogLevel = slog.LevelWarn }, false},
		{"other metrics_listen", func(in *Interface) { in.MetricsListen = "" }, false},
		{"other qlog_dir", func(in *Interface) { in.QlogDir = "/tmp/q" }, false},
		{"other keylog_file", func(in *Interface) { in.KeylogFile = "" }, false},
		{"other ready_wait", func(in *Interface) { in.ReadyWait = 0 }, false},
		{"other uplinks", func(in *Interface) { in.Uplinks = []string{"eth9"} }, false},
		{"uplinks any", func(in *Interface) { in.UplinksAny = true }, false},
		{"other keepalive", func(in *Interface) { in.KeepAlive = time.Minute }, false},
	}
	for _, tt := range tests {
		b := a
		b.Addresses = slices.Clone(a.Addresses)
		tt.change(&b)
		if got := a.Equal(b); got != tt.want {
			t.Errorf("%s: Equal = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestSetDefaultsReadyWait checks that SetDefaults fills ReadyWait only when
// it is zero.
func TestSetDefaultsReadyWait(t *testing.T) {
	for _, tt := range []struct{ in, want time.Duration }{{0, DefaultReadyWait}, {time.Second, time.Second}, {MaxReadyWait, MaxReadyWait}} {
		c := &Config{Interface: Interface{ReadyWait: tt.in}}
		c.SetDefaults()
		if got := c.Interface.ReadyWait; got != tt.want {
			t.Errorf("SetDefaults with ReadyWait %v: got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestPeerEqual(t *testing.T) {
	a := Peer{Name: "a", PublicKey: mustKey(keyBoat), AllowedIPs: mustPrefixes("10.0.0.0/8"), Endpoint: "h.example:1", Line: 3,
		Duplicate: mustRules("udp:5004", "dscp:46")}
	tests := []struct {
		name   string
		change func(p *Peer)
		want   bool
	}{
		{"same", func(p *Peer) {}, true},
		{"other line", func(p *Peer) { p.Line = 9 }, true},
		{"other name", func(p *Peer) { p.Name = "b" }, false},
		{"other key", func(p *Peer) { p.PublicKey = mustKey(keyB) }, false},
		{"other prefixes", func(p *Peer) { p.AllowedIPs = mustPrefixes("10.0.0.0/9") }, false},
		{"other endpoint", func(p *Peer) { p.Endpoint = "" }, false},
		{"other endpoint_tcp", func(p *Peer) { p.EndpointTCP = "h.example:443" }, false},
		{"other tcp_proxy", func(p *Peer) { p.TCPProxy = "http://p.example:3128" }, false},
		{"other multipath", func(p *Peer) { p.Multipath = MultipathRedundant }, false},
		{"other redundancy", func(p *Peer) { p.Redundancy = RedundancyAll }, false},
		{"other duplicate rule", func(p *Peer) { p.Duplicate[1] = classify.MustParseRule("dscp:34") }, false},
		{"duplicate reordered", func(p *Peer) { p.Duplicate[0], p.Duplicate[1] = p.Duplicate[1], p.Duplicate[0] }, false},
		{"no duplicate", func(p *Peer) { p.Duplicate = nil }, false},
		{"same duplicate, written otherwise", func(p *Peer) { p.Duplicate[0] = classify.MustParseRule("UDP:5004-5004") }, true},
	}
	for _, tt := range tests {
		b := a
		b.AllowedIPs = slices.Clone(a.AllowedIPs)
		b.Duplicate = slices.Clone(a.Duplicate)
		tt.change(&b)
		if got := a.Equal(b); got != tt.want {
			t.Errorf("%s: Equal = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestPathMode(t *testing.T) {
	two := Interface{Uplinks: []string{"wlan0", "wwan0"}}
	tests := []struct {
		name string
		ifc  Interface
		p    Peer
		want Multipath
	}{
		{"site with two uplinks, no key", two, Peer{Endpoint: "h:1"}, MultipathFailover},
		{"uplinks any, no key", Interface{UplinksAny: true}, Peer{Endpoint: "h:1"}, MultipathFailover},
		{"one uplink, no key", Interface{Uplinks: []string{"wlan0"}}, Peer{Endpoint: "h:1"}, MultipathOff},
		{"no uplinks, no key", Interface{}, Peer{Endpoint: "h:1"}, MultipathOff},
		{"no uplinks, endpoint_tcp", Interface{}, Peer{Endpoint: "h:1", EndpointTCP: "h:443"}, MultipathFailover},
		{"no uplinks, duplicate", Interface{}, Peer{Endpoint: "h:1", Duplicate: []classify.Rule{classify.MustParseRule("udp:5004")}}, MultipathFailover},
		{"off", two, Peer{Endpoint: "h:1", Multipath: MultipathOff}, MultipathOff},
		{"redundant", two, Peer{Endpoint: "h:1", Multipath: MultipathRedundant}, MultipathRedundant},
		{"a peer that dials in", two, Peer{Multipath: MultipathRedundant}, MultipathOff},
	}
	for _, tt := range tests {
		c := &Config{Interface: tt.ifc}
		if got := c.PathMode(&tt.p); got != tt.want {
			t.Errorf("%s: PathMode = %v, want %v", tt.name, got, tt.want)
		}
	}
}
