// SPDX-License-Identifier: MIT

package classify

import (
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		in, want string // want: String() of the rule
	}{
		{"udp:5004", "udp:5004"},
		{"tcp:443", "tcp:443"},
		{"UDP:5004", "udp:5004"},
		{"Tcp:443", "tcp:443"},
		{"udp:1", "udp:1"},
		{"udp:65535", "udp:65535"},
		{"udp:05004", "udp:5004"},
		{"udp:16384-32767", "udp:16384-32767"},
		{"tcp:1-65535", "tcp:1-65535"},
		{"udp:5004-5004", "udp:5004"},
		{"dscp:46", "dscp:46"},
		{"DSCP:0", "dscp:0"},
		{"dscp:63", "dscp:63"},
		{"192.168.20.0/24", "192.168.20.0/24"},
		{"10.0.0.5/32", "10.0.0.5/32"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"2001:DB8::/32", "2001:db8::/32"},
		{"fd77::2/128", "fd77::2/128"},
		{"::/0", "::/0"},
	}
	for _, tt := range tests {
		r, err := ParseRule(tt.in)
		if err != nil {
			t.Errorf("ParseRule(%q) = %v", tt.in, err)
			continue
		}
		if got := r.String(); got != tt.want {
			t.Errorf("ParseRule(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		if !r.IsValid() {
			t.Errorf("ParseRule(%q).IsValid() = false", tt.in)
		}
		if r2 := MustParseRule(r.String()); r2 != r {
			t.Errorf("ParseRule(%q) = %v after a round trip, want %v", r.String(), r2, r)
		}
	}
}

func TestParseRuleEqual(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"udp:5004", "udp:5004-5004", true},
		{"udp:5004", "UDP:5004", true},
		{"udp:5004", "tcp:5004", false},
		{"udp:5004", "udp:5004-5005", false},
		{"dscp:46", "dscp:046", true},
		{"10.0.0.0/8", "10.0.0.0/9", false},
		{"2001:db8::/32", "2001:DB8:0::/32", true},
	} {
		if got := MustParseRule(tt.a) == MustParseRule(tt.b); got != tt.want {
			t.Errorf("%s == %s: %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestParseRuleErrors(t *testing.T) {
	const forms = "write udp:PORT, tcp:PORT, udp:LO-HI, tcp:LO-HI, dscp:N or an IP prefix such as 192.168.20.0/24"
	tests := []struct {
		in, want string // want: the whole message
	}{
		{"", `duplicate rule "": empty rule: ` + forms},
		{"udp:70000", `duplicate rule "udp:70000": port out of range 1-65535`},
		{"udp:0", `duplicate rule "udp:0": port out of range 1-65535`},
		{"tcp:99999999999999999999999", `duplicate rule "tcp:99999999999999999999999": port out of range 1-65535`},
		{"udp:5000-70000", `duplicate rule "udp:5000-70000": port out of range 1-65535`},
		{"udp:0-10", `duplicate rule "udp:0-10": port out of range 1-65535`},
		{"udp:", `duplicate rule "udp:": port is missing: write udp:PORT or udp:LO-HI`},
		{"tcp", `duplicate rule "tcp": port is missing: write tcp:PORT or tcp:LO-HI`},
		{"tcp:https", `duplicate rule "tcp:https": port "https" is not a number`},
		{"udp: 5004", `duplicate rule "udp: 5004": port " 5004" is not a number`},
		{"udp:+5004", `duplicate rule "udp:+5004": port "+5004" is not a number`},
		{"udp:0x10", `duplicate rule "udp:0x10": port "0x10" is not a number`},
		{"udp:5000-", `duplicate rule "udp:5000-": port range "5000-" must be LO-HI, e.g. udp:16384-32767`},
		{"tcp:-5000", `duplicate rule "tcp:-5000": port range "-5000" must be LO-HI, e.g. tcp:16384-32767`},
		{"udp:5000-5010-5020", `duplicate rule "udp:5000-5010-5020": port "5010-5020" is not a number`},
		{"udp:6000-5000", `duplicate rule "udp:6000-5000": port range 6000-5000 is reversed: write udp:5000-6000`},
		{"dscp:64", `duplicate rule "dscp:64": DSCP out of range 0-63`},
		{"dscp:99999999999999999999999", `duplicate rule "dscp:99999999999999999999999": DSCP out of range 0-63`},
		{"dscp:", `duplicate rule "dscp:": DSCP value is missing: write dscp:N with N 0-63, e.g. dscp:46 for EF`},
		{"dscp:-1", `duplicate rule "dscp:-1": DSCP "-1" is not a number 0-63`},
		{"dscp:ef", `duplicate rule "dscp:ef": DSCP "ef" is not a number: write dscp:46 for EF`},
		{"dscp:AF41", `duplicate rule "dscp:AF41": DSCP "AF41" is not a number: write dscp:34 for AF41`},
		{"dscp:cs5", `duplicate rule "dscp:cs5": DSCP "cs5" is not a number: write dscp:40 for CS5`},
		{"dscp:af44", `duplicate rule "dscp:af44": DSCP "af44" is not a number 0-63`},
		{"icmp", `duplicate rule "icmp": there is no icmp rule (duplicated pings would hide the loss they measure); a prefix rule matches ICMP to and from its hosts too`},
		{"ICMPv6", `duplicate rule "ICMPv6": there is no icmp rule (duplicated pings would hide the loss they measure); a prefix rule matches ICMP to and from its hosts too`},
		{"sctp:5004", `duplicate rule "sctp:5004": unknown protocol "sctp": ` + forms},
		{"voice", `duplicate rule "voice": not a rule: ` + forms},
		{"5004", `duplicate rule "5004": not a rule: ` + forms},
		{" udp:5004", `duplicate rule " udp:5004": not a rule: ` + forms},
		{"192.168.20.5", `duplicate rule "192.168.20.5": an address, not a prefix: write it as 192.168.20.5/32 for this one address`},
		{"fd77::2", `duplicate rule "fd77::2": an address, not a prefix: write it as fd77::2/128 for this one address`},
		{"192.168.20.1/24", `duplicate rule "192.168.20.1/24": prefix has host bits set (did you mean 192.168.20.0/24?)`},
		{"fd77::2/64", `duplicate rule "fd77::2/64": prefix has host bits set (did you mean fd77::/64?)`},
		{"10.0.0.300/24", `duplicate rule "10.0.0.300/24": not a valid prefix: ParseAddr("10.0.0.300"): IPv4 field has value >255`},
		{"10.0.0.0/33", `duplicate rule "10.0.0.0/33": not a valid prefix: prefix length out of range`},
		{"10.0.0.0/", `duplicate rule "10.0.0.0/": not a valid prefix: bad bits after slash: ""`},
		{"fe80::%eth0/64", `duplicate rule "fe80::%eth0/64": not a valid prefix: IPv6 zones cannot be present in a prefix`},
		{"fe80::1%eth0", `duplicate rule "fe80::1%eth0": not a rule: ` + forms},
		{"::ffff:192.168.0.0/120", `duplicate rule "::ffff:192.168.0.0/120": IPv4-mapped prefix: write the IPv4 prefix 192.168.0.0/24`},
		{strings.Repeat("x", 100), `duplicate rule "` + strings.Repeat("x", 64) + `...": not a rule: ` + forms},
	}
	for _, tt := range tests {
		r, err := ParseRule(tt.in)
		if err == nil {
			t.Errorf("ParseRule(%q) = %v, nil; want error %q", tt.in, r, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("ParseRule(%q) error =\n\t%q\nwant\n\t%q", tt.in, err, tt.want)
		}
		if r != (Rule{}) {
			t.Errorf("ParseRule(%q) = %v with an error, want the zero Rule", tt.in, r)
		}
	}
}

func TestZeroRule(t *testing.T) {
	var r Rule
	if r.IsValid() || r.String() != "invalid Rule" {
		t.Errorf("zero Rule: IsValid %v, String %q; want false, \"invalid Rule\"", r.IsValid(), r.String())
	}
	if _, err := ParseRule(r.String()); err == nil {
		t.Errorf("ParseRule(%q) succeeded", r.String())
	}
}

func TestMustParseRulePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("MustParseRule(\"udp:0\") did not panic")
		}
	}()
	MustParseRule("udp:0")
}

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"udp:5004", "tcp:8000-8100", "dscp:46", "192.168.20.0/24", "2001:db8::/32",
		"udp:70000", "udp:6000-5000", "dscp:ef", "icmp", "::ffff:10.0.0.0/104", "", "udp:", "UDP:05004-05004"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			if r != (Rule{}) {
				t.Fatalf("ParseRule(%q) = %v and error %v", s, r, err)
			}
			if !strings.HasPrefix(err.Error(), "duplicate rule \"") {
				t.Fatalf("ParseRule(%q) error %q lacks the prefix", s, err)
			}
			return
		}
		if !r.IsValid() {
			t.Fatalf("ParseRule(%q) = zero Rule, nil", s)
		}
		out := r.String()
		r2, err := ParseRule(out)
		if err != nil || r2 != r {
			t.Fatalf("ParseRule(%q) = %v, %v; want %v (from %q)", out, r2, err, r, s)
		}
		if out2 := r2.String(); out2 != out {
			t.Fatalf("String not canonical: %q then %q", out, out2)
		}
	})
}
