// SPDX-License-Identifier: MIT

package ctl

// The text form of a Status: what `godwit show` prints.

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Format renders st for people, in the manner of `wg show`: times
// relative to the daemon's clock at the snapshot, sizes in binary units.
func Format(st *Status) string {
	var b strings.Builder
	ifc := &st.Interface
	fmt.Fprintf(&b, "interface: %s\n", ifc.Name)
	fmt.Fprintf(&b, "  public key: %s\n", ifc.PublicKey)
	if ifc.Listen != "" {
		fmt.Fprintf(&b, "  listening on: %s\n", ifc.Listen)
		if ifc.ListenTCP.IsValid() {
			fmt.Fprintf(&b, "  listening on tcp: %s\n", ifc.ListenTCP)
		}
		if tl := ifc.TCPListener; tl != nil {
			fmt.Fprintf(&b, "  tcp listener: %s\n", formatTCPListener(tl))
		}
	} else {
		fmt.Fprintf(&b, "  local address: %s\n", ifc.LocalAddr)
	}
	fmt.Fprintf(&b, "  addresses: %s\n", joinPrefixes(ifc.Addresses))
	fmt.Fprintf(&b, "  mtu: %d\n", ifc.MTU)
	if ifc.Routes == "connected" {
		fmt.Fprintf(&b, "  routes: while a site is connected and prefers this node (proto %d)\n", ifc.RouteProtocol)
	}
	if ifc.HubFailovers > 0 {
		fmt.Fprintf(&b, "  hub failovers: %d\n", ifc.HubFailovers)
	}
	if ifc.MetricsListen != "" {
		fmt.Fprintf(&b, "  metrics: http://%s/metrics\n", ifc.MetricsListen)
	}
	fmt.Fprintf(&b, "  up: %s (godwit %s)\n", humanDuration(st.Now.Sub(st.Started)), st.Version)
	fmt.Fprintf(&b, "  transfer: %s\n", formatTraffic(ifc.Traffic))
	if ifc.UDPSendCalls > 0 {
		fmt.Fprintf(&b, "  udp sends: %d datagrams in %d sendmsg calls (%.1f per call)\n",
			ifc.UDPSendSegments, ifc.UDPSendCalls, float64(ifc.UDPSendSegments)/float64(ifc.UDPSendCalls))
	}
	if d := formatDrops(ifc.Drops); d != "" {
		fmt.Fprintf(&b, "  drops: %s\n", d)
	}
	var extra []string
	for _, x := range []struct {
		n    uint64
		what string
	}{
		{ifc.ICMPSent, "ICMP errors sent"},
		{ifc.ICMPRateLimited, "ICMP errors rate-limited"},
		{ifc.UnreachableSends, "sends to an unreachable network"},
		{ifc.TCPSendDrops, "packets dropped by a full TCP path send queue"},
		{ifc.TUNWriteErrors, "TUN write errors"},
		{ifc.TUNTooManySegments, "TUN reads with too many segments"},
		{ifc.UDPRcvbufErrors, "UDP receive-buffer drops in this namespace"},
		{ifc.Connections.ZeroRTTAttempted, "0-RTT dials"},
		{ifc.Connections.ZeroRTTRejected, "0-RTT dials rejected"},
		{ifc.Connections.EarlyAccepted, "0-RTT connections accepted"},
		{ifc.Connections.EarlyRefusedReplay, "0-RTT refused as replays"},
		{ifc.Connections.EarlyRefusedRestart, "0-RTT refused after a restart"},
		{ifc.Connections.Redials, "redials"},
		{ifc.Connections.RedialsAfterReset, "redials after a stateless reset"},
		{ifc.Connections.RetriesSent, "Retries sent (address validation under load)"},
		{ifc.Connections.RefusedKeys, "handshakes refused for unknown keys"},
		{ifc.Connections.HandshakesAbandoned, "handshakes never completed"},
		{ifc.Connections.RefusedBusy, "connections refused as busy"},
		{ifc.Connections.ControlFloods, "peers closed for control-stream floods"},
	} {
		if x.n > 0 {
			extra = append(extra, fmt.Sprintf("%d %s", x.n, x.what))
		}
	}
	if len(extra) > 0 {
		fmt.Fprintf(&b, "  events: %s\n", strings.Join(extra, ", "))
	}

	for i := range st.Peers {
		p := &st.Peers[i]
		fmt.Fprintf(&b, "\npeer: %s\n", p.Name)
		fmt.Fprintf(&b, "  public key: %s\n", p.PublicKey)
		state := string(p.State)
		if p.State == StateConnected && !p.ConnectedSince.IsZero() {
			state += " for " + humanDuration(st.Now.Sub(p.ConnectedSince))
		}
		fmt.Fprintf(&b, "  state: %s\n", state)
		if p.LastError != "" && p.State != StateConnected {
			fmt.Fprintf(&b, "  last error: %s (%s)\n", p.LastError, ago(st.Now, p.LastErrorAt))
		}
		endpoint := ""
		if len(p.Paths) > 0 {
			endpoint = p.Paths[0].Remote.String()
		}
		switch {
		case endpoint != "" && p.Endpoint != "" && p.Endpoint != endpoint:
			endpoint += " (configured " + p.Endpoint + ")"
		case endpoint == "":
			endpoint = p.Endpoint
		}
		if endpoint != "" {
			fmt.Fprintf(&b, "  endpoint: %s\n", endpoint)
		}
		fmt.Fprintf(&b, "  allowed ips: %s\n", joinPrefixes(p.AllowedIPs))
		if !p.LastHandshake.IsZero() {
			hs := ago(st.Now, p.LastHandshake)
			if p.Resumed {
				hs += " (resumed session)"
			}
			fmt.Fprintf(&b, "  latest handshake: %s\n", hs)
		}
		if !p.LastRx.IsZero() || !p.LastTx.IsZero() {
			fmt.Fprintf(&b, "  latest packet: received %s, sent %s\n", ago(st.Now, p.LastRx), ago(st.Now, p.LastTx))
		}
		fmt.Fprintf(&b, "  transfer: %s\n", formatTraffic(p.Traffic))
		if d := formatDrops(p.Drops); d != "" {
			fmt.Fprintf(&b, "  drops: %s\n", d)
		}
		if p.HeartbeatRTT > 0 {
			fmt.Fprintf(&b, "  heartbeat rtt: %s\n", humanRTT(p.HeartbeatRTT))
		}
		if p.Multipath != "" {
			fmt.Fprintf(&b, "  multipath: %s, %d connections\n", p.Multipath, len(p.Paths))
		}
		if p.Priority != nil {
			role := "standby"
			if p.Carrying {
				role = "carries " + joinPrefixes(p.Carries)
			}
			fmt.Fprintf(&b, "  hub priority: %d, %s\n", *p.Priority, role)
		}
		if p.Endpoint == "" && p.State == StateConnected && ifc.Routes == "connected" {
			pref := "uses this hub"
			if !p.Preferred {
				pref = "uses another hub"
			}
			routes := "routes installed"
			if !p.RoutesInstalled {
				routes = "routes withdrawn"
			}
			fmt.Fprintf(&b, "  site: %s; %s\n", pref, routes)
		}
		if f := p.Fallback; f != nil {
			state := "udp"
			if f.OnTCP {
				state = "tcp"
			}
			if f.Reason != "" {
				state += fmt.Sprintf(" (%s, %s)", f.Reason, ago(st.Now, f.Since))
			}
			fmt.Fprintf(&b, "  transport: %s; %d fallbacks to tcp, %d returns to udp\n", state, f.Fallbacks, f.Returns)
		}
		if p.Migrations > 0 {
			fmt.Fprintf(&b, "  migrations: %d, last outage %s\n", p.Migrations, humanRTT(p.LastMigrationOutage))
		}
		switch {
		case p.ZeroRTT.Used:
			fmt.Fprintf(&b, "  0-rtt: used\n")
		case p.ZeroRTT.Rejected:
			fmt.Fprintf(&b, "  0-rtt: rejected\n")
		}
		for j := range p.Paths {
			pa := &p.Paths[j]
			via := ""
			if pa.Uplink != "" {
				via = " via " + pa.Uplink
			}
			if pa.Transport != "" && pa.Transport != "udp" {
				via += " over " + pa.Transport
			}
			if !pa.Active {
				state := "standby, not validated"
				if pa.Validated {
					state = "standby, validated"
				}
				fmt.Fprintf(&b, "  path %s -> %s%s (%s)\n", pa.Local, pa.Remote, via, state)
				continue
			}
			if m := pa.Multipath; m != nil {
				fmt.Fprintf(&b, "  path %s -> %s%s (%s; health %s, loss %.1f %%)\n", pa.Local, pa.Remote, via, m.Role, m.Health, 100*m.Loss)
				fmt.Fprintf(&b, "    tunnel: %.0f %% of the traffic, %d packets sent, %d received, %d copies sent, %d duplicates discarded\n",
					100*m.Share, m.TxPackets, m.RxPackets, m.DupSent, m.DupDiscarded)
			} else {
				fmt.Fprintf(&b, "  path %s -> %s%s (active)\n", pa.Local, pa.Remote, via)
			}
			fmt.Fprintf(&b, "    rtt: %s smoothed, %s min, %s latest\n",
				humanRTT(pa.RTT.Smoothed), humanRTT(pa.RTT.Min), humanRTT(pa.RTT.Latest))
			fmt.Fprintf(&b, "    congestion window: %s, datagram limit: %d B\n", humanBytes(pa.CongestionWindow), pa.DatagramLimit)
			fmt.Fprintf(&b, "    quic: %s sent (%d packets), %s received (%d packets), %d packets lost (%s)\n",
				humanBytes(pa.BytesSent), pa.PacketsSent, humanBytes(pa.BytesReceived), pa.PacketsReceived,
				pa.PacketsLost, humanBytes(pa.BytesLost))
			if d := formatDrops(pa.QUICDrops); d != "" {
				fmt.Fprintf(&b, "    quic drops: %s\n", d)
			}
		}
	}
	return b.String()
}

func joinPrefixes(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "(none)"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func formatTraffic(t Traffic) string {
	return fmt.Sprintf("%s received (%d packets), %s sent (%d packets)",
		humanBytes(t.RxBytes), t.RxPackets, humanBytes(t.TxBytes), t.TxPackets)
}

// formatDrops lists the non-zero drop counts, sorted by name, or "".
func formatDrops(m map[string]uint64) string {
	var parts []string
	for k, v := range m {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// ago says how long before now t was: "1m12s ago", "never" for the zero
// time, "now" within a second (and for a t after now: clocks may step).
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "now"
	}
	return humanDuration(d) + " ago"
}

// humanDuration renders d at second resolution with at most two units:
// "45s", "1m12s", "3h4m", "2d5h". Below a second it says "0s".
func humanDuration(d time.Duration) string {
	if d < time.Second {
		return "0s"
	}
	s := int64(d / time.Second)
	days, s := s/86400, s%86400
	h, s := s/3600, s%3600
	m, s := s/60, s%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd%dh", days, h)
	case h > 0:
		return fmt.Sprintf("%dh%dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm%ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// humanRTT renders a short duration with three significant digits:
// "812µs", "1.23ms", "45.6ms", "1.20s"; "-" for 0 (not measured).
func humanRTT(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d/time.Microsecond)
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + "ms"
	}
	return sig3(d.Seconds()) + "s"
}

// sig3 formats v (>= 1) with three significant digits.
func sig3(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// humanBytes renders n in binary units: "512 B", "1.50 KiB", "12.3 MiB".
func humanBytes(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	// sig3 rounds 1023.6 up to "1024"; say 1.00 of the next unit instead.
	if v >= 1023.5 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return sig3(v) + " " + units[i]
}

// formatTCPListener is the TCP listener's line of `godwit show`: its
// clients and handshakes now, then every nonzero counter.
func formatTCPListener(tl *TCPListenerStatus) string {
	parts := []string{fmt.Sprintf("%d clients, %d handshakes in progress", tl.Clients, tl.Pending)}
	for _, x := range []struct {
		n    uint64
		what string
	}{
		{tl.Accepted, "accepted"},
		{tl.RefusedKeys, "refused keys"},
		{tl.HandshakeTimeouts, "handshake timeouts"},
		{tl.HandshakeErrors, "handshake errors"},
		{tl.Evicted, "handshakes evicted by newer ones"},
		{tl.BadFrames, "bad frames"},
		{tl.IdleCloses, "idle closes"},
		{tl.SendDrops, "send drops"},
		{tl.ReceiveWaits, "waits for the full receive queue"},
	} {
		if x.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", x.n, x.what))
		}
	}
	return strings.Join(parts, ", ")
}
