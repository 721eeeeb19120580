// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/godwit-vpn/godwit/routing/netlab"
)

// chaosTable is the nft table of the loss rule: in prerouting at priority
// -300, before conntrack, `numgen random mod 100 < pct` drops pct % of
// the UDP packets to the port.
const chaosTable = "gwbchaos"

// tbfBurst and tbfLatency shape the rate limit of `tc qdisc ... tbf`: a
// burst large enough for a GSO super-packet at 100 Mbit/s, and a queue of
// 25 ms.
const (
	tbfBurst   = "64kb"
	tbfLatency = "25ms"
)

// nftLossRules renders the loss table: every packet of proto ("udp" or
// "tcp") to port is counted, then pct % of them, chosen at random, are
// counted again and dropped.
func nftLossRules(proto string, port, pct int) string {
	return fmt.Sprintf(`table inet %[1]s {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		%[4]s dport %[2]d counter
		%[4]s dport %[2]d numgen random mod 100 < %[3]d counter drop
	}
}
`, chaosTable, port, pct, proto)
}

// parseNftCounters returns the packet counts of the "counter packets N"
// statements of `nft list table` output, in order.
func parseNftCounters(out string) ([]uint64, error) {
	var n []uint64
	f := strings.Fields(out)
	for i := 0; i+2 < len(f); i++ {
		if f[i] != "counter" || f[i+1] != "packets" {
			continue
		}
		v, err := strconv.ParseUint(f[i+2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bench: nft counter %q: %w", f[i+2], err)
		}
		n = append(n, v)
	}
	return n, nil
}

// applied is an impairment in place: undo removes it, dropPct (nil for a
// rate limit) reads the loss rule's drop share so far.
type applied struct {
	undo    func() error
	dropPct func() (*float64, error)
}

// impair sets im up on the underlay for a tunnel whose hub listens on
// proto ("udp", or "tcp" for Godwit's TCP path) port. Loss: the rule goes into the hub (receiving) namespace, and the
// site's veth gets gso_max_segs 1, so UDP GSO super-packets are cut into
// datagrams (and TSO super-segments into TCP segments) before they cross
// the veth and each one is dropped on its own (a veth otherwise carries a
// whole GSO batch as one packet through prerouting). Rate: a tbf on the site's veth (the sending side). On error
// nothing stays in place.
func (t *topo) impair(ctx context.Context, im impairment, proto string, port int) (*applied, error) {
	if im.RateMbit > 0 {
		if _, err := t.site.Exec("tc", "qdisc", "replace", "dev", "veth0", "root", "tbf",
			"rate", strconv.Itoa(im.RateMbit)+"mbit", "burst", tbfBurst, "latency", tbfLatency); err != nil {
			return nil, err
		}
		return &applied{
			undo: func() error {
				_, err := t.site.Exec("tc", "qdisc", "del", "dev", "veth0", "root")
				return err
			},
			dropPct: func() (*float64, error) { return nil, nil },
		}, nil
	}
	out, err := t.site.Exec("ip", "-d", "-o", "link", "show", "dev", "veth0")
	if err != nil {
		return nil, err
	}
	segs, err := parseLinkInt(out, "gso_max_segs")
	if err != nil {
		return nil, err
	}
	if _, err := t.site.Exec("ip", "link", "set", "dev", "veth0", "gso_max_segs", "1"); err != nil {
		return nil, err
	}
	restoreSegs := func() error {
		_, err := t.site.Exec("ip", "link", "set", "dev", "veth0", "gso_max_segs", strconv.Itoa(segs))
		return err
	}
	if _, err := nsCommand(ctx, t.hub, nftLossRules(proto, port, im.LossPct), "nft", "-f", "-"); err != nil {
		return nil, errors.Join(err, restoreSegs())
	}
	return &applied{
		undo: func() error {
			_, err := t.hub.Exec("nft", "delete", "table", "inet", chaosTable)
			return errors.Join(err, restoreSegs())
		},
		dropPct: func() (*float64, error) {
			out, err := t.hub.Exec("nft", "list", "table", "inet", chaosTable)
			if err != nil {
				return nil, err
			}
			c, err := parseNftCounters(out)
			if err != nil {
				return nil, err
			}
			if len(c) != 2 {
				return nil, fmt.Errorf("bench: %d nft counters in %q, want 2", len(c), out)
			}
			if c[0] == 0 {
				return nil, errors.New("bench: the loss rule saw no packet")
			}
			v := 100 * float64(c[1]) / float64(c[0])
			return &v, nil
		},
	}, nil
}

// nsCommand runs args inside ns with stdin.
func nsCommand(ctx context.Context, ns *netlab.NS, stdin string, args ...string) (string, error) {
	return commandOutput(ctx, stdin, "ip", append([]string{"netns", "exec", ns.Name}, args...)...)
}
