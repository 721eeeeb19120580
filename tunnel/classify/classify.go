// SPDX-License-Identifier: MIT

// Package classify decides whether an IP packet matches one of a peer's
// duplicate rules (config key duplicate in [[peer]]): packets that match
// are also sent on a second healthy path. A rule is one of
//
//	udp:PORT      UDP with source or destination port PORT (1-65535)
//	tcp:PORT      the same for TCP
//	udp:LO-HI     UDP with source or destination port in LO..HI, inclusive
//	tcp:LO-HI     the same for TCP
//	dscp:N        DSCP N (0-63): the top 6 bits of the IPv4 TOS or IPv6
//	              traffic class byte, ECN bits ignored
//	PREFIX        an IPv4 or IPv6 prefix such as 192.168.20.0/24: source or
//	              destination address inside it, any protocol
//
// Ports match in either direction: a voice flow carries its well-known port
// as the destination one way and as the source on the way back. There is deliberately no
// icmp rule: duplicating pings would hide the very loss they are sent to
// measure, and a prefix rule already matches ICMP to and from its hosts.
//
// [ParseRule] reads a rule and [Rule.String] writes it back in canonical
// form (lower case, "udp:5004" for "udp:5004-5004"). A [Set] holds the
// parsed rules of one peer; [Set.Match] is the per-packet test, which does
// not allocate and never panics. It reads ports only where they are: in
// the first (or only) fragment, in a TCP or UDP header right after the
// IPv4 header, or after at most eight IPv6 extension headers of the kinds
// hop-by-hop, routing, destination options and fragment. Anything else
// (ESP, AH, a later fragment, a header cut short) matches no port rule but
// may still match a DSCP or prefix rule.
//
// The package is internal to the module rather than under tunnel/internal
// because config, which checks the rules with file and line, must import it
// as well as the tunnel, which matches packets; it imports neither.
package classify

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// kind is what a Rule matches on.
type kind uint8

const (
	kindInvalid kind = iota // the zero Rule
	kindUDP
	kindTCP
	kindDSCP
	kindPrefix
)

// Rule is one duplicate rule. The zero Rule is invalid and matches
// nothing; valid ones come from [ParseRule]. Rules are small comparable
// values: two rules are == when they match the same packets by the same
// test (udp:5004 and udp:5004-5004 are equal).
type Rule struct {
	kind   kind
	dscp   uint8        // kindDSCP: 0..63
	lo, hi uint16       // kindUDP, kindTCP: 1 <= lo <= hi
	prefix netip.Prefix // kindPrefix: masked, no zone, not IPv4-mapped
}

// syntax is the list of rule forms that error messages offer.
const syntax = "write udp:PORT, tcp:PORT, udp:LO-HI, tcp:LO-HI, dscp:N or an IP prefix such as 192.168.20.0/24"

// ParseRule parses one rule in the syntax of the package doc. Protocol
// names are case-insensitive. The error says what is wrong, for example
// `duplicate rule "udp:70000": port out of range 1-65535`.
func ParseRule(s string) (Rule, error) {
	r, why := parseRule(s)
	if why != "" {
		return Rule{}, errors.New("duplicate rule " + strconv.Quote(clip(s)) + ": " + why)
	}
	return r, nil
}

// MustParseRule is ParseRule for rules known to be valid, as in tests; it
// panics on an error.
func MustParseRule(s string) Rule {
	r, err := ParseRule(s)
	if err != nil {
		panic(err)
	}
	return r
}

// parseRule returns the rule s, or why it is not one.
func parseRule(s string) (Rule, string) {
	if s == "" {
		return Rule{}, "empty rule: " + syntax
	}
	name, val, colon := strings.Cut(s, ":")
	switch strings.ToLower(name) {
	case "udp":
		return parsePorts(kindUDP, val)
	case "tcp":
		return parsePorts(kindTCP, val)
	case "dscp":
		return parseDSCP(val)
	case "icmp", "icmpv6", "icmp6":
		return Rule{}, "there is no icmp rule (duplicated pings would hide the loss they measure); a prefix rule matches ICMP to and from its hosts too"
	}
	if strings.Contains(s, "/") {
		return parsePrefix(s)
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return Rule{}, fmt.Sprintf("an address, not a prefix: write it as %s for this one address", netip.PrefixFrom(a, a.BitLen()))
	}
	if colon && isWord(name) {
		return Rule{}, fmt.Sprintf("unknown protocol %q: %s", clip(name), syntax)
	}
	return Rule{}, "not a rule: " + syntax
}

// parsePorts parses the PORT or LO-HI after "udp:" or "tcp:".
func parsePorts(k kind, val string) (Rule, string) {
	proto := "udp"
	if k == kindTCP {
		proto = "tcp"
	}
	if val == "" {
		return Rule{}, fmt.Sprintf("port is missing: write %[1]s:PORT or %[1]s:LO-HI", proto)
	}
	los, his, isRange := strings.Cut(val, "-")
	if isRange && (los == "" || his == "") {
		return Rule{}, fmt.Sprintf("port range %q must be LO-HI, e.g. %s:16384-32767", clip(val), proto)
	}
	lo, why := parsePort(los)
	if why != "" {
		return Rule{}, why
	}
	hi := lo
	if isRange {
		if hi, why = parsePort(his); why != "" {
			return Rule{}, why
		}
		if lo > hi {
			return Rule{}, fmt.Sprintf("port range %d-%d is reversed: write %s:%d-%d", lo, hi, proto, hi, lo)
		}
	}
	return Rule{kind: k, lo: lo, hi: hi}, ""
}

// parsePort parses one port number, 1..65535.
func parsePort(s string) (uint16, string) {
	n, err := strconv.ParseUint(s, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, "port out of range 1-65535"
	case err != nil:
		return 0, fmt.Sprintf("port %q is not a number", clip(s))
	case n < 1 || n > 65535:
		return 0, "port out of range 1-65535"
	}
	return uint16(n), ""
}

// parseDSCP parses the N after "dscp:".
func parseDSCP(val string) (Rule, string) {
	if val == "" {
		return Rule{}, "DSCP value is missing: write dscp:N with N 0-63, e.g. dscp:46 for EF"
	}
	n, err := strconv.ParseUint(val, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return Rule{}, "DSCP out of range 0-63"
	case err != nil:
		if v, ok := dscpName(val); ok {
			return Rule{}, fmt.Sprintf("DSCP %q is not a number: write dscp:%d for %s", clip(val), v, strings.ToUpper(val))
		}
		return Rule{}, fmt.Sprintf("DSCP %q is not a number 0-63", clip(val))
	case n > 63:
		return Rule{}, "DSCP out of range 0-63"
	}
	return Rule{kind: kindDSCP, dscp: uint8(n)}, ""
}

// dscpName returns the code point of a per-hop behaviour name (EF, CS0-CS7,
// AF11-AF43, RFC 2474, 2597, 3246), so that errors can give the number.
func dscpName(s string) (uint8, bool) {
	s = strings.ToLower(s)
	switch {
	case s == "ef":
		return 46, true
	case len(s) == 3 && s[:2] == "cs" && '0' <= s[2] && s[2] <= '7':
		return (s[2] - '0') << 3, true
	case len(s) == 4 && s[:2] == "af" && '1' <= s[2] && s[2] <= '4' && '1' <= s[3] && s[3] <= '3':
		return (s[2]-'0')<<3 | (s[3]-'0')<<1, true
	}
	return 0, false
}

// parsePrefix parses an IPv4 or IPv6 prefix rule.
func parsePrefix(s string) (Rule, string) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		msg := err.Error()
		if i := strings.Index(msg, "): "); i >= 0 && strings.HasPrefix(msg, "netip.ParsePrefix(") {
			msg = msg[i+3:]
		}
		return Rule{}, "not a valid prefix: " + msg
	}
	if p != p.Masked() {
		return Rule{}, fmt.Sprintf("prefix has host bits set (did you mean %s?)", p.Masked())
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		v4 := netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		return Rule{}, fmt.Sprintf("IPv4-mapped prefix: write the IPv4 prefix %s", v4)
	}
	return Rule{kind: kindPrefix, prefix: p}, ""
}

// isWord reports whether s is a short run of ASCII letters, such as a
// protocol name.
func isWord(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// IsValid reports whether r is a rule, that is, not the zero Rule.
func (r Rule) IsValid() bool { return r.kind != kindInvalid }

// String returns r in the canonical form of ParseRule: "udp:5004",
// "tcp:8000-8100", "dscp:46", "192.168.20.0/24"; "invalid Rule" for the
// zero Rule, which ParseRule rejects.
func (r Rule) String() string {
	switch r.kind {
	case kindUDP, kindTCP:
		proto := "udp:"
		if r.kind == kindTCP {
			proto = "tcp:"
		}
		if r.lo == r.hi {
			return proto + strconv.Itoa(int(r.lo))
		}
		return proto + strconv.Itoa(int(r.lo)) + "-" + strconv.Itoa(int(r.hi))
	case kindDSCP:
		return "dscp:" + strconv.Itoa(int(r.dscp))
	case kindPrefix:
		return r.prefix.String()
	}
	return "invalid Rule"
}

// clip shortens s for a message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
