// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/routing/netlab"
)

// Drop counters are keyed "<daemon> <source>/<reason>": the daemon is
// "hub" or "site", the source one of
//
//   - udp: the kernel's UDP counters of the daemon's namespace
//     (/proc/net/snmp Udp and snmp6 Udp6, summed): rcvbuf_errors, datagrams
//     dropped for a full socket receive buffer, and sndbuf_errors. Counted
//     for both daemons; every UDP socket of the namespace is the daemon's.
//   - quic: quic-go's drops on the peer's connection (ctl.PathStatus
//     QUICDrops): dos_prevention (its queue of undecrypted packets was
//     full), receive_queue_full (its datagram receive queue), send_too_large.
//   - inbound, outbound: the tunnel's drops (ctl.InterfaceStatus Drops):
//     inbound/tun_queue_full, outbound/queue_full (the peer's send queue;
//     quic-go's own datagram send queue blocks instead of dropping) and
//     every other reason.
//   - tun: TUN reads that lost part of a coalesced segment
//     (too_many_segments) and failed TUN writes (write_errors).
//   - socket: UDP sends that failed because the network was gone
//     (unreachable_sends).
//   - tcp: packets a TCP path dropped because its send queue stayed full
//     (send_drops; the overtcp rows).
//
// Only "udp" is counted for wireguard-go, which exposes no drop counters.
const (
	dropRcvbuf = "udp/rcvbuf_errors"
	dropSndbuf = "udp/sndbuf_errors"
)

// inTotal reports whether the drop counter key counts in a run's
// DropsPerGB. outbound/no_route does not: those are packets the kernel
// sends into the TUN for no peer (IPv6 router solicitations and multicast
// listener reports after the interface came up), not tunnel traffic lost;
// wireguard-go drops the same packets without counting them.
func inTotal(key string) bool { return !strings.HasSuffix(key, " outbound/no_route") }

// countedFor reports whether the drop counter key is counted for the daemon
// called name.
func countedFor(name, key string) bool {
	if name == "Godwit" {
		return true
	}
	_, reason, _ := strings.Cut(key, " ")
	return strings.HasPrefix(reason, "udp/")
}

// snapshot is the counters read at one instant.
type snapshot struct {
	retrans uint64            // inner TCP RetransSegs of the sending (site) namespace
	drops   map[string]uint64 // drop counters, see dropRcvbuf
}

// delta returns b-a for every key of b. A counter that went down (a
// connection was replaced and its quic-go counters restarted) counts its
// value in b.
func delta(a, b map[string]uint64) map[string]uint64 {
	d := make(map[string]uint64, len(b))
	for k, v := range b {
		if v >= a[k] {
			d[k] = v - a[k]
		} else {
			d[k] = v
		}
	}
	return d
}

// parseSNMP reads the text of /proc/net/snmp (pairs of lines "Proto: Name
// Name ..." and "Proto: value value ...") and of /proc/net/snmp6 (lines
// "Name value") into a map keyed "Proto.Name" for snmp and "Name" for
// snmp6 ("Tcp.RetransSegs", "Udp.RcvbufErrors", "Udp6RcvbufErrors").
// Negative values (Tcp MaxConn is -1) are left out.
func parseSNMP(snmp, snmp6 string) (map[string]uint64, error) {
	m := map[string]uint64{}
	lines := strings.Split(strings.TrimRight(snmp, "\n"), "\n")
	if len(lines)%2 != 0 {
		return nil, fmt.Errorf("bench: snmp has %d lines, want pairs", len(lines))
	}
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || len(names) != len(values) || names[0] != values[0] || !strings.HasSuffix(names[0], ":") {
			return nil, fmt.Errorf("bench: snmp lines %q and %q do not pair", lines[i], lines[i+1])
		}
		proto := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			if strings.HasPrefix(values[j], "-") {
				continue
			}
			v, err := strconv.ParseUint(values[j], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("bench: snmp %s %s: %w", proto, names[j], err)
			}
			m[proto+"."+names[j]] = v
		}
	}
	for line := range strings.Lines(snmp6) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("bench: snmp6 line %q", strings.TrimSpace(line))
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bench: snmp6 %s: %w", f[0], err)
		}
		m[f[0]] = v
	}
	return m, nil
}

// snmpCounter returns m[key], or an error naming key when it is missing.
func snmpCounter(m map[string]uint64, key string) (uint64, error) {
	v, ok := m[key]
	if !ok {
		return 0, fmt.Errorf("bench: no %s in /proc/net/snmp", key)
	}
	return v, nil
}

// readSNMP reads /proc/net/snmp and /proc/net/snmp6 of ns (through
// /proc/thread-self on a thread inside it; snmp6 may be missing without
// IPv6).
func readSNMP(ns *netlab.NS) (map[string]uint64, error) {
	var snmp, snmp6 []byte
	err := ns.Do(func() error {
		var err error
		if snmp, err = os.ReadFile("/proc/thread-self/net/snmp"); err != nil {
			return err
		}
		snmp6, err = os.ReadFile("/proc/thread-self/net/snmp6")
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bench: snmp of %s: %w", ns.Name, err)
	}
	return parseSNMP(string(snmp), string(snmp6))
}

// udpDrops adds the kernel's UDP drop counters of m, IPv4 and IPv6
// together, to drops under "<who> udp/...".
func udpDrops(drops, m map[string]uint64, who string) error {
	for key, names := range map[string][2]string{
		dropRcvbuf: {"Udp.RcvbufErrors", "Udp6RcvbufErrors"},
		dropSndbuf: {"Udp.SndbufErrors", "Udp6SndbufErrors"},
	} {
		v4, err := snmpCounter(m, names[0])
		if err != nil {
			return err
		}
		drops[who+" "+key] = v4 + m[names[1]] // no Udp6 lines without IPv6
	}
	return nil
}

// readCounters reads the snapshot of a running pair: the kernel counters of
// both namespaces and, if daemon is not nil, the daemons' own drops.
func (t *topo) readCounters(ctx context.Context, daemon func(context.Context) (map[string]uint64, error)) (snapshot, error) {
	s := snapshot{drops: map[string]uint64{}}
	for _, x := range []struct {
		who string
		ns  *netlab.NS
	}{{"hub", t.hub}, {"site", t.site}} {
		m, err := readSNMP(x.ns)
		if err != nil {
			return s, err
		}
		if err := udpDrops(s.drops, m, x.who); err != nil {
			return s, err
		}
		if x.who == "site" {
			if s.retrans, err = snmpCounter(m, "Tcp.RetransSegs"); err != nil {
				return s, err
			}
		}
	}
	if daemon != nil {
		d, err := daemon(ctx)
		if err != nil {
			return s, err
		}
		maps.Copy(s.drops, d)
	}
	return s, nil
}

// statusDrops returns the drop counters (keyed "<who> <source>/<reason>",
// see dropRcvbuf) in the status of a Godwit daemon: the tunnel's drops,
// quic-go's drops summed over the peers' paths, the TUN's and the socket's
// losses.
func statusDrops(who string, st *ctl.Status) map[string]uint64 {
	m := map[string]uint64{}
	for k, v := range st.Interface.Drops {
		m[who+" "+k] += v
	}
	for _, p := range st.Peers {
		for _, pa := range p.Paths {
			for k, v := range pa.QUICDrops {
				m[who+" quic/"+k] += v
			}
		}
	}
	m[who+" tun/too_many_segments"] += st.Interface.TUNTooManySegments
	m[who+" tun/write_errors"] += st.Interface.TUNWriteErrors
	m[who+" socket/unreachable_sends"] += st.Interface.UnreachableSends
	m[who+" tcp/send_drops"] += st.Interface.TCPSendDrops
	return m
}

// godwitDrops returns a function that asks each Godwit daemon (control
// socket by name, "hub" and "site") for its status and returns their drop
// counters together.
func godwitDrops(sockets map[string]string) func(context.Context) (map[string]uint64, error) {
	return func(ctx context.Context) (map[string]uint64, error) {
		m := map[string]uint64{}
		for who, sock := range sockets {
			st, err := ctl.Query(ctx, sock)
			if err != nil {
				return nil, fmt.Errorf("bench: status of the godwit %s: %w", who, err)
			}
			maps.Copy(m, statusDrops(who, st))
		}
		return m, nil
	}
}
