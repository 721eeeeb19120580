// SPDX-License-Identifier: MIT

package config

import (
	"bytes"
	"fmt"
	"net/netip"
	"unicode/utf8"

	"github.com/godwit-vpn/godwit/tunnel/classify"
)

// MarshalTOML encodes c as a configuration file that Parse reads back to an
// equal Config (apart from Path, the line numbers and Interface.PrivateKey,
// which is never written: the key lives in PrivateKeyFile). Every key is
// written, also those at their default, except the optional strings that
// are "" (listen, listen_tcp, metrics_listen, qlog_dir, keylog_file,
// endpoint, endpoint_tcp, tcp_proxy),
// uplinks when it is unset, multipath when it is failover on a peer
// without endpoint (where the key is not allowed), redundancy when it is
// two and multipath is not redundant, and duplicate when it is empty;
// strings are quoted so any value survives. It
// does not validate c; it fails only for values TOML cannot carry (a string
// that is not UTF-8, a log level, multipath or redundancy with no name).
func (c *Config) MarshalTOML() ([]byte, error) {
	var b bytes.Buffer
	in := &c.Interface
	lvl, ok := levelName(in.LogLevel)
	if !ok {
		return nil, fmt.Errorf("config: log level %v has no name in the file format", in.LogLevel)
	}
	b.WriteString("[interface]\n")
	if err := writeString(&b, "name", in.Name); err != nil {
		return nil, err
	}
	if err := writeString(&b, "private_key_file", in.PrivateKeyFile); err != nil {
		return nil, err
	}
	writePrefixes(&b, "addresses", in.Addresses)
	for _, f := range []struct{ key, val string }{{"listen", in.Listen}, {"listen_tcp", in.ListenTCP}} {
		if f.val == "" {
			continue
		}
		if err := writeString(&b, f.key, f.val); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(&b, "mtu = %d\n", in.MTU)
	if err := writeString(&b, "state_dir", in.StateDir); err != nil {
		return nil, err
	}
	fmt.Fprintf(&b, "fwmark = %#x\n", in.FwMark)
	if in.TableOff {
		b.WriteString("table = \"off\"\n")
	} else {
		fmt.Fprintf(&b, "table = %d\n", in.Table)
	}
	fmt.Fprintf(&b, "log_level = %q\n", lvl)
	for _, f := range []struct{ key, val string }{{"metrics_listen", in.MetricsListen}, {"qlog_dir", in.QlogDir}, {"keylog_file", in.KeylogFile}} {
		if f.val == "" {
			continue
		}
		if err := writeString(&b, f.key, f.val); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(&b, "ready_wait = %q\n", in.ReadyWait.String())
	switch {
	case in.UplinksAny:
		b.WriteString("uplinks = \"any\"\n")
	case in.Uplinks != nil:
		b.WriteString("uplinks = [")
		for i, n := range in.Uplinks {
			if i > 0 {
				b.WriteString(", ")
			}
			if !utf8.ValidString(n) {
				return nil, fmt.Errorf("config: uplinks entry %q is not valid UTF-8", clip(n))
			}
			writeQuoted(&b, n)
		}
		b.WriteString("]\n")
	}
	fmt.Fprintf(&b, "keepalive = %q\n", in.KeepAlive.String())
	if int(in.Routes) >= len(routesNames) {
		return nil, fmt.Errorf("config: routes %v has no name in the file format", in.Routes)
	}
	fmt.Fprintf(&b, "routes = %q\n", in.Routes)
	fmt.Fprintf(&b, "route_protocol = %d\n", in.RouteProtocol)
	fmt.Fprintf(&b, "hold_down = %q\n", in.HoldDown.String())
	if in.KillSwitch {
		b.WriteString("kill_switch = true\n")
	}
	for _, k := range []struct {
		key  string
		cmds []string
	}{{"post_up", in.PostUp}, {"pre_down", in.PreDown}} {
		if len(k.cmds) == 0 {
			continue
		}
		b.WriteString(k.key + " = [")
		for i, c := range k.cmds {
			if i > 0 {
				b.WriteString(", ")
			}
			if !utf8.ValidString(c) {
				return nil, fmt.Errorf("config: %s command %q is not valid UTF-8", k.key, clip(c))
			}
			writeQuoted(&b, c)
		}
		b.WriteString("]\n")
	}

	for _, pr := range c.Peers {
		b.WriteString("\n[[peer]]\n")
		if err := writeString(&b, "name", pr.Name); err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "public_key = %q\n", pr.PublicKey)
		writePrefixes(&b, "allowed_ips", pr.AllowedIPs)
		for _, f := range []struct{ key, val string }{{"endpoint", pr.Endpoint}, {"endpoint_tcp", pr.EndpointTCP}, {"tcp_proxy", pr.TCPProxy}} {
			if f.val == "" {
				continue
			}
			if err := writeString(&b, f.key, f.val); err != nil {
				return nil, err
			}
		}
		if int(pr.Multipath) >= len(multipathNames) {
			return nil, fmt.Errorf("config: peer %q multipath %v has no name in the file format", clip(pr.Name), pr.Multipath)
		}
		if int(pr.Redundancy) >= len(redundancyNames) {
			return nil, fmt.Errorf("config: peer %q redundancy %v has no name in the file format", clip(pr.Name), pr.Redundancy)
		}
		if pr.Multipath != MultipathDefault {
			fmt.Fprintf(&b, "multipath = %q\n", pr.Multipath)
		}
		if pr.Multipath == MultipathRedundant || pr.Redundancy != RedundancyTwo {
			fmt.Fprintf(&b, "redundancy = %q\n", pr.Redundancy)
		}
		if len(pr.Duplicate) > 0 {
			writeRules(&b, "duplicate", pr.Duplicate)
		}
		if pr.HasPriority {
			fmt.Fprintf(&b, "priority = %d\n", pr.Priority)
		}
		if pr.KeepAlive != 0 {
			fmt.Fprintf(&b, "keepalive = %q\n", pr.KeepAlive.String())
		}
	}
	return b.Bytes(), nil
}

// writeRules writes key = ["r1", "r2"]. An invalid rule is written as
// "invalid Rule", which Parse rejects, as Validate does.
func writeRules(b *bytes.Buffer, key string, rs []classify.Rule) {
	b.WriteString(key)
	b.WriteString(" = [")
	for i, r := range rs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "%q", r.String())
	}
	b.WriteString("]\n")
}

// writePrefixes writes key = ["p1", "p2"]. An invalid prefix is written as
// "invalid Prefix", which Parse rejects, as Validate does.
func writePrefixes(b *bytes.Buffer, key string, ps []netip.Prefix) {
	b.WriteString(key)
	b.WriteString(" = [")
	for i, p := range ps {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "%q", p.String())
	}
	b.WriteString("]\n")
}

// writeString writes key = "s" as a TOML basic string.
func writeString(b *bytes.Buffer, key, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("config: %s %q is not valid UTF-8", key, clip(s))
	}
	b.WriteString(key)
	b.WriteString(" = ")
	writeQuoted(b, s)
	b.WriteString("\n")
	return nil
}

// writeQuoted writes s, valid UTF-8, as a TOML basic string.
func writeQuoted(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}
