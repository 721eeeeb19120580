// SPDX-License-Identifier: MIT

package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/tunnel/classify"

	"github.com/BurntSushi/toml"
)

// The keys of each table, in the order MarshalTOML writes them.
var (
	interfaceKeys = []string{"name", "private_key_file", "addresses", "listen", "listen_tcp", "mtu", "state_dir", "fwmark", "table", "log_level",
		"metrics_listen", "qlog_dir", "keylog_file", "ready_wait", "uplinks", "keepalive",
		"routes", "route_protocol", "hold_down", "post_up", "pre_down", "kill_switch"}
	peerKeys = []string{"name", "public_key", "allowed_ips", "endpoint", "endpoint_tcp", "tcp_proxy", "multipath", "redundancy", "duplicate", "priority", "keepalive"}
	topKeys  = []string{"interface", "peer"}
)

// logLevels maps the log_level values to slog levels.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// decode turns TOML text into a Config with defaults for the missing
// optional keys. It reports syntax errors, wrong types, unknown keys and
// values that cannot be represented (a prefix that does not parse, a key that
// is not base64) to p; the checks that need only the Config are left to
// validate. It returns nil when the text is not TOML.
func decode(name string, data []byte, p *problems) *Config {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line, col := errorPosition(data, pe.Position)
			msg := "invalid TOML: " + pe.Message
			if col > 0 {
				msg = fmt.Sprintf("invalid TOML at column %d: %s", col, pe.Message)
			}
			if looksLikeWgQuick(data) {
				msg += wgQuickHint
			}
			p.addErr(line, msg, err)
		} else {
			p.addErr(0, "invalid TOML: "+err.Error(), err)
		}
		return nil
	}
	lines := locate(string(data))
	c := &Config{Path: name}
	c.SetDefaults()

	for _, k := range sortedKeys(raw) {
		if !slices.Contains(topKeys, k) {
			what := "key"
			if _, ok := raw[k].(map[string]any); ok {
				what = "table"
			}
			p.addf(lines[k], "unknown top-level %s %q%s", what, k, suggest(k, topKeys))
		}
	}

	in := &c.Interface
	in.pos.header = lines["interface"]
	switch v := raw["interface"].(type) {
	case nil:
		p.addf(0, "missing [interface] table")
		in.pos.bad = map[string]bool{"": true}
	case map[string]any:
		t := table{p: p, pos: &in.pos, what: "[interface]", m: v}
		t.locate(lines, "interface")
		t.decodeInterface(in)
	default:
		p.addf(lines["interface"], "interface must be a table ([interface]), not %s", typeName(v))
		in.pos.bad = map[string]bool{"": true}
	}

	var peers []map[string]any
	switch v := raw["peer"].(type) {
	case nil:
	case []map[string]any:
		peers = v
	case []any:
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				p.addf(lines["peer"], "peer #%d must be a table ([[peer]]), not %s", i+1, typeName(e))
				continue
			}
			peers = append(peers, m)
		}
	default:
		p.addf(lines["peer"], "peer must be an array of tables ([[peer]] headers), not %s", typeName(v))
	}
	for i, m := range peers {
		var pr Peer
		t := table{p: p, pos: &pr.pos, what: fmt.Sprintf("[[peer]] #%d", i+1), m: m}
		pr.pos.header = lines[locPath("peer", index(i))]
		if pr.pos.header == 0 {
			pr.pos.header = lines["peer"]
		}
		pr.Line = pr.pos.header
		t.locate(lines, "peer", index(i))
		t.decodePeer(&pr)
		c.Peers = append(c.Peers, pr)
	}
	return c
}

// wgQuickHint is added to the syntax error of a file that looks like a
// wg-quick config pasted in.
const wgQuickHint = `; this looks like a wg-quick (WireGuard) file: Godwit's config is TOML with lower-case keys and quoted values, ` +
	`e.g. [interface] private_key_file = "/etc/godwit/gw0.key" and addresses = ["10.0.0.1/24"], [[peer]] public_key = "..." ` +
	`and allowed_ips = ["10.0.0.2/32"] (see godwit.toml(5))`

// looksLikeWgQuick reports whether data has the section headers or keys
// of a wg-quick file.
func looksLikeWgQuick(data []byte) bool {
	for _, line := range bytes.Split(data, []byte("\n")) {
		l := bytes.TrimSpace(line)
		for _, w := range []string{"[Interface]", "[Peer]", "PrivateKey", "PublicKey", "AllowedIPs", "ListenPort"} {
			if bytes.HasPrefix(l, []byte(w)) {
				return true
			}
		}
	}
	return false
}

// errorPosition returns the line and column of a TOML syntax error. It counts
// from the byte offset, because toml.ParseError's Line is one too far when
// the offending byte is a newline ("[interface" without its "]").
func errorPosition(data []byte, pos toml.Position) (line, col int) {
	if pos.Start < 0 || pos.Start > len(data) || (pos.Start == 0 && pos.Line > 1) {
		return pos.Line, pos.Col
	}
	before := data[:pos.Start]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return line, col
}

// table decodes the keys of one TOML table.
type table struct {
	p    *problems
	pos  *position
	what string // "[interface]", "[[peer]] #2", later `peer "boat-1"`
	m    map[string]any
}

// locate fills t.pos.keys from the located lines of the table at path.
func (t *table) locate(lines map[string]int, path ...string) {
	t.pos.keys = make(map[string]int, len(t.m))
	t.pos.bad = make(map[string]bool)
	for k := range t.m {
		if l, ok := lines[locPath(append(path, k)...)]; ok {
			t.pos.keys[k] = l
		}
	}
}

// unknown reports the keys of t that are not in known.
func (t *table) unknown(known []string) {
	for _, k := range sortedKeys(t.m) {
		if !slices.Contains(known, k) {
			t.p.addf(t.pos.line(k), "unknown key %q in %s%s", k, t.what, suggest(k, known))
		}
	}
}

// badType reports that key holds a value of the wrong type.
func (t *table) badType(key, want string, v any) {
	t.p.addf(t.pos.line(key), "%s %s must be %s, not %s", t.what, key, want, typeName(v))
	t.pos.bad[key] = true
}

// str returns the string at key and whether there is a usable one.
func (t *table) str(key string) (string, bool) {
	v, ok := t.m[key]
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		t.badType(key, "a string", v)
	}
	return s, ok
}

// integer returns the integer at key if it lies in [min, max].
func (t *table) integer(key string, min, max int64) (int64, bool) {
	v, ok := t.m[key]
	if !ok {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		t.badType(key, "an integer", v)
		return 0, false
	}
	if n < min || n > max {
		t.p.addf(t.pos.line(key), "%s %s %d is out of range %d..%d", t.what, key, n, min, max)
		t.pos.bad[key] = true
		return 0, false
	}
	return n, true
}

// strs returns the array of strings at key. Elements of another type are
// reported and left out.
func (t *table) strs(key string) ([]string, bool) {
	v, ok := t.m[key]
	if !ok {
		return nil, false
	}
	a, ok := v.([]any)
	if !ok {
		t.badType(key, "an array of strings", v)
		return nil, false
	}
	out := make([]string, 0, len(a))
	for i, e := range a {
		s, ok := e.(string)
		if !ok {
			t.p.addf(t.pos.line(key), "%s %s[%d] must be a string, not %s", t.what, key, i, typeName(e))
			t.pos.bad[key] = true
			continue
		}
		out = append(out, s)
	}
	return out, true
}

// prefixes returns the prefixes at key; entries that do not parse are
// reported (as "<noun> ...") and left out.
func (t *table) prefixes(key, noun string, hostOK bool) []netip.Prefix {
	ss, ok := t.strs(key)
	if !ok {
		return nil
	}
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		pfx, msg := parsePrefix(s, hostOK)
		if msg != "" {
			t.p.addf(t.pos.line(key), "%s %s", noun, msg)
			t.pos.bad[key] = true
			continue
		}
		out = append(out, pfx)
	}
	return out
}

func (t *table) decodeInterface(in *Interface) {
	t.unknown(interfaceKeys)
	if s, ok := t.str("name"); ok {
		in.Name = s
	}
	if s, ok := t.str("private_key_file"); ok {
		in.PrivateKeyFile = s
	}
	in.Addresses = t.prefixes("addresses", "address", true)
	if s, ok := t.str("listen"); ok {
		in.Listen = s
	}
	if s, ok := t.str("listen_tcp"); ok {
		in.ListenTCP = s
	}
	if n, ok := t.integer("mtu", math.MinInt64, math.MaxInt64); ok {
		in.MTU = int(n)
	}
	if s, ok := t.str("state_dir"); ok {
		in.StateDir = s
	}
	if n, ok := t.integer("fwmark", 0, math.MaxUint32); ok {
		in.FwMark = uint32(n)
	}
	if v, ok := t.m["table"].(string); ok {
		if strings.ToLower(v) != "off" {
			t.p.addf(t.pos.line("table"), `table %q must be a table number or "off" (no routes and no rules: routing is left to you or to BIRD or FRR)`, clip(v))
			t.pos.bad["table"] = true
		} else {
			in.TableOff = true
		}
	} else if n, ok := t.integer("table", math.MinInt64, math.MaxInt64); ok {
		in.Table = int(n)
	}
	if s, ok := t.str("log_level"); ok {
		l, found := logLevels[strings.ToLower(s)]
		if !found {
			t.p.addf(t.pos.line("log_level"), "log_level %q is not one of debug, info, warn, error", clip(s))
			t.pos.bad["log_level"] = true
		}
		in.LogLevel = l
	}
	if s, ok := t.str("metrics_listen"); ok {
		in.MetricsListen = s
	}
	if s, ok := t.str("qlog_dir"); ok {
		in.QlogDir = s
	}
	if s, ok := t.str("keylog_file"); ok {
		in.KeylogFile = s
	}
	if d, ok := t.duration("ready_wait"); ok {
		in.ReadyWait = d
	}
	t.uplinks(in)
	if d, ok := t.duration("keepalive"); ok {
		in.KeepAlive = d
	}
	if s, ok := t.str("routes"); ok {
		i := slices.Index(routesNames, strings.ToLower(s))
		if i < 0 {
			t.p.addf(t.pos.line("routes"), `routes %q is not "always" (every peer's routes from the start, the default) or "connected" (a peer's routes only while it is connected and uses this hub)`, clip(s))
			t.pos.bad["routes"] = true
		} else {
			in.Routes = Routes(i)
		}
	}
	if n, ok := t.integer("route_protocol", MinRouteProtocol, MaxRouteProtocol); ok {
		in.RouteProtocol = int(n)
	}
	if d, ok := t.duration("hold_down"); ok {
		in.HoldDown = d
	}
	if v, ok := t.m["kill_switch"]; ok {
		if b, ok := v.(bool); ok {
			in.KillSwitch = b
		} else {
			t.badType("kill_switch", "true or false", v)
		}
	}
	in.PostUp = t.commands("post_up")
	in.PreDown = t.commands("pre_down")
}

// commands returns the shell commands at key: one string or an array of
// strings.
func (t *table) commands(key string) []string {
	v, ok := t.m[key]
	if !ok {
		return nil
	}
	if s, ok := v.(string); ok {
		return []string{s}
	}
	if _, ok := v.([]any); !ok {
		t.badType(key, "a command string or an array of them", v)
		return nil
	}
	ss, _ := t.strs(key)
	return ss
}

// uplinks decodes uplinks: the string "any" or an array of interface names.
func (t *table) uplinks(in *Interface) {
	v, ok := t.m["uplinks"]
	if !ok {
		return
	}
	if s, ok := v.(string); ok {
		if s != "any" {
			t.p.addf(t.pos.line("uplinks"), `uplinks %q must be "any" or an array of interface names, e.g. ["wlan0", "wwan0"]`, clip(s))
			t.pos.bad["uplinks"] = true
			return
		}
		in.UplinksAny = true
		return
	}
	if _, ok := v.([]any); !ok {
		t.badType("uplinks", `"any" or an array of interface names`, v)
		return
	}
	if ss, ok := t.strs("uplinks"); ok {
		in.Uplinks = ss
	}
}

// duration returns the Go duration ("20s", "1m30s") written as a string at
// key, and whether there is a usable one.
func (t *table) duration(key string) (time.Duration, bool) {
	v, ok := t.m[key]
	if !ok {
		return 0, false
	}
	s, ok := v.(string)
	if !ok {
		t.badType(key, `a duration string such as "20s"`, v)
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.p.addErr(t.pos.line(key), fmt.Sprintf(`%s %q is not a duration: write it like "20s", "1m30s" or "0s"`, key, clip(s)), err)
		t.pos.bad[key] = true
		return 0, false
	}
	return d, true
}

func (t *table) decodePeer(pr *Peer) {
	if s, ok := t.str("name"); ok {
		pr.Name = s
		if validPeerName(s) {
			t.what = fmt.Sprintf("peer %q", s)
		}
	}
	t.unknown(peerKeys)
	if s, ok := t.str("public_key"); ok {
		k, err := key.Decode(s)
		if err != nil {
			t.p.addErr(t.pos.line("public_key"), fmt.Sprintf("%s public_key %q is not a valid key: %v", t.what, clip(s), err), err)
			t.pos.bad["public_key"] = true
		}
		pr.PublicKey = key.Public(k)
	}
	pr.AllowedIPs = t.prefixes("allowed_ips", t.what+" allowed_ips entry", false)
	if s, ok := t.str("endpoint"); ok {
		pr.Endpoint = s
	}
	if s, ok := t.str("endpoint_tcp"); ok {
		pr.EndpointTCP = s
	}
	if s, ok := t.str("tcp_proxy"); ok {
		pr.TCPProxy = s
	}
	if s, ok := t.str("multipath"); ok {
		i := slices.Index(multipathNames, strings.ToLower(s))
		if i <= 0 {
			t.p.addf(t.pos.line("multipath"), "%s multipath %q is not one of off, failover, redundant, aggregate", t.what, clip(s))
			t.pos.bad["multipath"] = true
		} else {
			pr.Multipath = Multipath(i)
		}
	}
	if s, ok := t.str("redundancy"); ok {
		i := slices.Index(redundancyNames, strings.ToLower(s))
		if i < 0 {
			t.p.addf(t.pos.line("redundancy"), `%s redundancy %q is not "two" (the two best healthy paths, the default) or "all" (every healthy path)`, t.what, clip(s))
			t.pos.bad["redundancy"] = true
		} else {
			pr.Redundancy = Redundancy(i)
		}
	}
	pr.Duplicate = t.rules("duplicate")
	if n, ok := t.integer("priority", 0, MaxPriority); ok {
		pr.Priority, pr.HasPriority = int(n), true
	}
	if d, ok := t.duration("keepalive"); ok {
		pr.KeepAlive = d
	}
}

// rules returns the duplicate rules at key; entries that do not parse are
// reported and left out.
func (t *table) rules(key string) []classify.Rule {
	v, ok := t.m[key]
	if !ok {
		return nil
	}
	if _, ok := v.([]any); !ok {
		t.badType(key, `an array of rules such as ["udp:5004", "dscp:46"]`, v)
		return nil
	}
	ss, _ := t.strs(key)
	out := make([]classify.Rule, 0, len(ss))
	for _, s := range ss {
		r, err := classify.ParseRule(s)
		if err != nil {
			t.p.addErr(t.pos.line(key), t.what+" "+err.Error(), err)
			t.pos.bad[key] = true
			continue
		}
		out = append(out, r)
	}
	return out
}

// parsePrefix parses s as "addr/len". An address without a length gets a
// message that says how to write it; hostOK tells whether the suggestion may
// be a subnet with host bits (interface addresses) or must be a host route.
func parsePrefix(s string, hostOK bool) (netip.Prefix, string) {
	pfx, err := netip.ParsePrefix(s)
	if err == nil {
		return pfx, ""
	}
	if !strings.Contains(s, "/") {
		if a, aerr := netip.ParseAddr(s); aerr == nil && a.Zone() == "" {
			host := netip.PrefixFrom(a, a.BitLen())
			if !hostOK {
				return netip.Prefix{}, fmt.Sprintf("%q is not a prefix: write it as %s for this one address", s, host)
			}
			subnet := netip.PrefixFrom(a, 24)
			if a.Is6() {
				subnet = netip.PrefixFrom(a, 64)
			}
			return netip.Prefix{}, fmt.Sprintf("%q is not a prefix: write it as %s or with the subnet length, e.g. %s", s, host, subnet)
		}
	}
	msg := err.Error()
	if i := strings.Index(msg, "): "); i >= 0 && strings.HasPrefix(msg, "netip.ParsePrefix(") {
		msg = msg[i+3:]
	}
	return netip.Prefix{}, fmt.Sprintf("%q is not a valid prefix: %s", clip(s), msg)
}

// typeName names the TOML type of a decoded value, with an article.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// suggest returns ` (did you mean "x"?)` for the known key closest to k, if
// one is close enough to be a typo, and "" otherwise.
func suggest(k string, known []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(s))
	}
	best, bestD := "", 3
	nk := norm(k)
	for _, c := range known {
		d := distance(nk, norm(c))
		if d < bestD {
			best, bestD = c, d
		}
	}
	// Plurals and singulars ("peers", "address") are common slips too.
	if best == "" {
		for _, c := range known {
			if strings.TrimSuffix(nk, "s") == strings.TrimSuffix(norm(c), "s") {
				best = c
			}
		}
	}
	if best == "" || best == k {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance of a and b in bytes, capped at 3 for
// long inputs (only small distances matter here).
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return 3
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
