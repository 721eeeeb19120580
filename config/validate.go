// SPDX-License-Identifier: MIT

package config

import (
	"cmp"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/tunnel/classify"
)

// Validate checks c and returns every problem found, joined with
// [errors.Join] as *Error values sorted by line (lines are known for configs
// from Parse and Load; for configs built in code they are 0). It does not
// apply defaults (see [Config.SetDefaults]) and does not touch the host.
func (c *Config) Validate() error {
	p := &problems{file: c.Path}
	c.validate(p)
	return p.err()
}

// validate reports the problems of c to p. Fields whose values already failed
// to decode (pos.bad) are skipped.
func (c *Config) validate(p *problems) {
	in := &c.Interface
	if !in.pos.bad[""] {
		c.validateInterface(p)
	}
	owners := make([]owned, 0, len(c.Peers))
	names := make(map[string]int, len(c.Peers))
	keys := make(map[key.Public]int, len(c.Peers))
	dials := false
	for i := range c.Peers {
		pr := &c.Peers[i]
		label := peerLabel(i, pr)
		bad := pr.pos.bad
		if pr.Endpoint != "" || bad["endpoint"] {
			dials = true
		}

		switch {
		case bad["name"]:
		case pr.Name == "":
			p.addf(pr.pos.header, "%s is missing name", label)
		case !validPeerName(pr.Name):
			p.addf(pr.pos.line("name"), "peer name %q is not valid: use 1 to 64 of the characters A-Z a-z 0-9 . _ -", clip(pr.Name))
		default:
			if j, dup := names[pr.Name]; dup {
				p.addf(pr.pos.line("name"), "duplicate peer name %q (first at line %d)", pr.Name, c.Peers[j].pos.line("name"))
			} else {
				names[pr.Name] = i
			}
		}

		switch {
		case bad["public_key"]:
		case pr.PublicKey.IsZero() && pr.pos.has("public_key"):
			p.addf(pr.pos.line("public_key"), "%s public_key is all zeros", label)
		case pr.PublicKey.IsZero():
			p.addf(pr.pos.header, "%s is missing public_key", label)
		default:
			if j, dup := keys[pr.PublicKey]; dup {
				p.addf(pr.pos.line("public_key"), "%s has the same public_key as %s (line %d)", label, peerLabel(j, &c.Peers[j]), c.Peers[j].pos.line("public_key"))
			} else {
				keys[pr.PublicKey] = i
			}
		}

		line := pr.pos.line("allowed_ips")
		if len(pr.AllowedIPs) == 0 && !bad["allowed_ips"] {
			p.addf(line, "%s needs at least one prefix in allowed_ips, e.g. allowed_ips = [\"10.77.0.2/32\"]", label)
		}
		seen := make(map[netip.Prefix]bool, len(pr.AllowedIPs))
		for _, pfx := range pr.AllowedIPs {
			switch {
			case !pfx.IsValid():
				p.addf(line, "%s has an invalid prefix in allowed_ips", label)
			case pfx != pfx.Masked():
				p.addf(line, "%s allowed_ips entry %s has host bits set (did you mean %s?)", label, pfx, pfx.Masked())
			case pfx.Addr().Is4In6():
				p.addf(line, "%s allowed_ips entry %s is an IPv4-mapped IPv6 prefix, which the tunnel cannot route: %s", label, pfx, mappedFix(pfx))
			case seen[pfx]:
				p.addf(line, "%s lists allowed_ips %s twice", label, pfx)
			case pfx.Addr().Is6() && c.Interface.MTU >= 576 && c.Interface.MTU < 1280:
				// The TUN gets no IPv6 below 1280 (RFC 8200 5), so the
				// route could not be added at start.
				p.addf(line, "%s allowed_ips %s is IPv6, but mtu %d is below the 1280 that IPv6 needs: raise mtu to 1280 or leave IPv6 out of allowed_ips", label, pfx, c.Interface.MTU)
			default:
				seen[pfx] = true
				owners = append(owners, owned{pfx: pfx, peer: i, line: line})
			}
		}

		if pr.Endpoint != "" {
			c.validateEndpoint(p, i, label)
		}
		c.validateTCP(p, i, label)
		c.validateMultipath(p, i, label)
		c.validatePriority(p, i, label)
		if pr.pos.has("keepalive") && !pr.pos.bad["keepalive"] {
			switch {
			case pr.KeepAlive < MinKeepAlive || pr.KeepAlive > MaxKeepAlive:
				p.addf(pr.pos.line("keepalive"), "%s keepalive %v is out of range: it must be between %v and %v (default: the [interface]'s)", label, pr.KeepAlive, MinKeepAlive, MaxKeepAlive)
			case pr.Endpoint == "" && !pr.pos.bad["endpoint"]:
				p.addf(pr.pos.line("keepalive"), "%s keepalive needs endpoint: it is the keep-alive of the connections this node dials (a peer that dials in sets its own)", label)
			}
		}
	}
	c.validateOverlaps(p, owners)
	if in.KillSwitch {
		full := false
		for _, pr := range c.Peers {
			for _, pfx := range pr.AllowedIPs {
				full = full || (pfx.IsValid() && pfx.Bits() == 0)
			}
		}
		if !full {
			p.addf(in.pos.line("kill_switch"), "kill_switch needs a full tunnel: a peer with 0.0.0.0/0 or ::/0 in allowed_ips (with split routes there is nothing to keep in the tunnel)")
		}
	}
	if !in.pos.bad[""] && in.Listen == "" && !in.pos.bad["listen"] && !dials {
		p.addf(0, "nothing could ever connect: [interface] has no listen and no peer has an endpoint (set listen on a hub, and endpoint on the peers a site dials)")
	}
}

func (c *Config) validateInterface(p *problems) {
	in := &c.Interface
	bad := in.pos.bad
	if !bad["name"] {
		if why := ifnameProblem(in.Name); why != "" {
			p.addf(in.pos.line("name"), "interface name %q is not a valid Linux interface name: %s", clip(in.Name), why)
		}
	}
	switch {
	case bad["private_key_file"]:
	case in.PrivateKeyFile == "":
		p.addf(in.pos.header, "[interface] is missing private_key_file (the path of this node's private key, e.g. \"/etc/godwit/gw0.key\")")
	case !filepath.IsAbs(in.PrivateKeyFile):
		p.addf(in.pos.line("private_key_file"), "private_key_file %q must be an absolute path", clip(in.PrivateKeyFile))
	}
	if len(in.Addresses) == 0 && !bad["addresses"] {
		p.addf(in.pos.line("addresses"), "[interface] needs at least one address in addresses, e.g. addresses = [\"10.77.0.1/24\"]")
	}
	var v6 netip.Prefix
	for _, a := range in.Addresses {
		if !a.IsValid() {
			p.addf(in.pos.line("addresses"), "[interface] has an invalid prefix in addresses")
			continue
		}
		if a.Addr().Is4In6() {
			p.addf(in.pos.line("addresses"), "address %s is an IPv4-mapped IPv6 address, which cannot be set on the interface: %s", a, mappedFix(a))
			continue
		}
		if a.Addr().Is6() && !a.Addr().Is4In6() && !v6.IsValid() {
			v6 = a
		}
	}
	if in.Listen != "" && !bad["listen"] {
		if why := hostPortProblem(in.Listen, ":4433"); why != "" {
			p.addf(in.pos.line("listen"), "listen %q %s", clip(in.Listen), why)
		}
	}
	if in.ListenTCP != "" && !bad["listen_tcp"] {
		line := in.pos.line("listen_tcp")
		if why := hostPortProblem(in.ListenTCP, ":443"); why != "" {
			p.addf(line, "listen_tcp %q %s", clip(in.ListenTCP), why)
		} else if in.Listen == "" && !bad["listen"] {
			p.addf(line, "listen_tcp needs listen: the TCP listener is the fallback of the UDP one, and sites try UDP first; set listen too, e.g. listen = \"0.0.0.0:4433\"")
		}
	}
	if !bad["mtu"] {
		switch {
		case in.MTU < 576 || in.MTU > 1500:
			p.addf(in.pos.line("mtu"), "mtu %d is out of range: it must be between 576 and 1500", in.MTU)
		case v6.IsValid() && in.MTU < 1280:
			p.addf(in.pos.line("mtu"), "mtu %d is too small for the IPv6 address %s: IPv6 needs an mtu of at least 1280", in.MTU, v6)
		}
	}
	switch {
	case bad["state_dir"]:
	case in.StateDir == "":
		p.addf(in.pos.line("state_dir"), "state_dir is empty (default %q)", DefaultStateDir)
	case !filepath.IsAbs(in.StateDir):
		p.addf(in.pos.line("state_dir"), "state_dir %q must be an absolute path", clip(in.StateDir))
	}
	if in.FwMark == 0 && !bad["fwmark"] {
		p.addf(in.pos.line("fwmark"), "fwmark 0 is invalid: Godwit's own sockets need a non-zero mark (default %#x)", DefaultFwMark)
	}
	if !bad["table"] {
		switch t := int64(in.Table); {
		case t == 253 || t == 254 || t == 255:
			p.addf(in.pos.line("table"), "table %d is reserved (%s); choose 1..0xFFFFFFFE except 253, 254 and 255 (default %d)", t, map[int64]string{253: "default", 254: "main", 255: "local"}[t], DefaultTable)
		case t < 1 || t > 0xFFFFFFFE:
			p.addf(in.pos.line("table"), "table %d is out of range: it must be 1..0xFFFFFFFE except 253, 254 and 255 (default %d)", t, DefaultTable)
		}
	}
	if _, ok := levelName(in.LogLevel); !ok && !bad["log_level"] {
		p.addf(in.pos.line("log_level"), "log_level %v is not one of debug, info, warn, error", in.LogLevel)
	}
	if in.MetricsListen != "" && !bad["metrics_listen"] {
		if why := hostPortProblem(in.MetricsListen, ":9586"); why != "" {
			p.addf(in.pos.line("metrics_listen"), "metrics_listen %q %s", clip(in.MetricsListen), why)
		}
	}
	for _, f := range []struct{ key, val string }{{"qlog_dir", in.QlogDir}, {"keylog_file", in.KeylogFile}} {
		if f.val != "" && !bad[f.key] && !filepath.IsAbs(f.val) {
			p.addf(in.pos.line(f.key), "%s %q must be an absolute path (or leave the key out to turn it off)", f.key, clip(f.val))
		}
	}
	if !bad["ready_wait"] && (in.ReadyWait < 0 || in.ReadyWait > MaxReadyWait) {
		p.addf(in.pos.line("ready_wait"), "ready_wait %v is out of range: it must be between 0s (at once) and %v (default %v)", in.ReadyWait, MaxReadyWait, DefaultReadyWait)
	}
	// 0 in a Config built in code means the default; in a file it is an error.
	if !bad["keepalive"] && (in.KeepAlive != 0 || in.pos.has("keepalive")) && (in.KeepAlive < MinKeepAlive || in.KeepAlive > MaxKeepAlive) {
		p.addf(in.pos.line("keepalive"), "keepalive %v is out of range: it must be between %v and %v (default %v)", in.KeepAlive, MinKeepAlive, MaxKeepAlive, DefaultKeepAlive)
	}
	if !bad["uplinks"] {
		in.validateUplinks(p)
	}
	for _, k := range []struct {
		key  string
		cmds []string
	}{{"post_up", in.PostUp}, {"pre_down", in.PreDown}} {
		for _, c := range k.cmds {
			if strings.TrimSpace(c) == "" {
				p.addf(in.pos.line(k.key), "%s has an empty command", k.key)
			}
		}
	}
	if in.TableOff && in.Routes == RoutesConnected && !bad["routes"] {
		p.addf(in.pos.line("routes"), `routes = "connected" cannot go with table = "off": with table = "off" Godwit installs no routes at all`)
	}
	if !bad["hold_down"] && (in.HoldDown < 0 || in.HoldDown > MaxHoldDown) {
		p.addf(in.pos.line("hold_down"), "hold_down %v is out of range: it must be between 0s (return at once) and %v (default %v)", in.HoldDown, MaxHoldDown, DefaultHoldDown)
	}
	if !bad["route_protocol"] && (in.RouteProtocol != 0 || in.pos.has("route_protocol")) && (in.RouteProtocol < MinRouteProtocol || in.RouteProtocol > MaxRouteProtocol) {
		p.addf(in.pos.line("route_protocol"), "route_protocol %d is out of range %d..%d (default %d)", in.RouteProtocol, MinRouteProtocol, MaxRouteProtocol, DefaultRouteProtocol)
	}
	if !bad["routes"] && int(in.Routes) >= len(routesNames) {
		p.addf(in.pos.line("routes"), "routes %v is not one of always, connected", in.Routes)
	}
}

// validateEndpoint checks the endpoint of peer i, which is not "".
func (c *Config) validateEndpoint(p *problems, i int, label string) {
	pr := &c.Peers[i]
	line := pr.pos.line("endpoint")
	if why := hostPortProblem(pr.Endpoint, ""); why != "" {
		p.addf(line, "%s endpoint %q %s", label, clip(pr.Endpoint), why)
		return
	}
	if ap, err := netip.ParseAddrPort(pr.Endpoint); err == nil { // else a host name: resolved at dial time
		c.checkLoop(p, i, line, label+" endpoint "+pr.Endpoint, "endpoint", ap.Addr())
	}
}

// checkLoop reports, at line, that what (an address this node dials the
// peer at) lies inside one of peer i's allowed_ips: a routing loop.
func (c *Config) checkLoop(p *problems, i, line int, what, noun string, addr netip.Addr) {
	ip := addr.Unmap().WithZone("")
	for _, pfx := range c.Peers[i].AllowedIPs {
		if pfx.IsValid() && pfx.Bits() > 0 && pfx.Masked().Contains(ip) {
			p.addf(line, "%s lies inside its allowed_ips %s: packets to the %s would be routed into the tunnel (a routing loop); leave %s out of allowed_ips or dial another address", what, pfx, noun, ip)
		}
	}
}

// validateTCP checks the endpoint_tcp and tcp_proxy keys of peer i:
// endpoint_tcp only with endpoint (a peer this node dials), tcp_proxy only
// with endpoint_tcp, both well-formed and outside the peer's allowed_ips,
// and no multipath = "off" (the TCP fallback is a second connection of
// the peer's set).
func (c *Config) validateTCP(p *problems, i int, label string) {
	pr := &c.Peers[i]
	bad := pr.pos.bad
	tcpSet := pr.EndpointTCP != "" && !bad["endpoint_tcp"]
	if tcpSet {
		line := pr.pos.line("endpoint_tcp")
		switch why := hostPortProblem(pr.EndpointTCP, ""); {
		case why != "":
			p.addf(line, "%s endpoint_tcp %q %s", label, clip(pr.EndpointTCP), why)
		case pr.Endpoint == "" && !bad["endpoint"]:
			p.addf(line, "%s endpoint_tcp needs endpoint: it is the TCP fallback of the UDP endpoint this node dials (a peer without endpoint dials in); set endpoint too, or remove endpoint_tcp", label)
		default:
			if ap, err := netip.ParseAddrPort(pr.EndpointTCP); err == nil {
				c.checkLoop(p, i, line, label+" endpoint_tcp "+pr.EndpointTCP, "endpoint", ap.Addr())
			}
		}
		if pr.Multipath == MultipathOff && !bad["multipath"] {
			p.addf(pr.pos.line("multipath"), `%s multipath = "off" cannot go with endpoint_tcp: the TCP fallback is a second connection of the peer's set (failover moves the traffic to it and back); remove multipath (failover is the default with endpoint_tcp) or endpoint_tcp`, label)
		}
	}
	if pr.TCPProxy == "" || bad["tcp_proxy"] {
		return
	}
	line := pr.pos.line("tcp_proxy")
	u, why := proxyProblem(pr.TCPProxy)
	if why != "" {
		p.addf(line, "%s tcp_proxy %s", label, why)
		return
	}
	if pr.EndpointTCP == "" && !bad["endpoint_tcp"] {
		p.addf(line, "%s tcp_proxy needs endpoint_tcp: the proxy is only used to reach the peer over TCP; set endpoint_tcp too, or remove tcp_proxy", label)
		return
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		c.checkLoop(p, i, line, label+" tcp_proxy "+u.Redacted(), "proxy", ip)
	}
}

// proxyProblem parses s as an HTTP proxy URL, http://[user:pass@]host[:port],
// and returns it, or says what is wrong with it (quoting s without its
// password).
func proxyProblem(s string) (*url.URL, string) {
	example := `write it as "http://proxy.example:3128" or "http://user:pass@192.0.2.8:3128"`
	if !strings.Contains(s, "://") {
		return nil, fmt.Sprintf("%q is not a URL: %s", clip(redactProxy(s)), example)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Sprintf("%q is not a URL: %s", clip(redactProxy(s)), example)
	}
	shown := strconv.Quote(clip(u.Redacted()))
	host, port := u.Hostname(), u.Port()
	switch {
	case u.Scheme != "http":
		return nil, fmt.Sprintf(`%s has scheme %q: only "http" proxies (with CONNECT) are supported; %s`, shown, clip(u.Scheme), example)
	case host == "":
		return nil, fmt.Sprintf("%s has no host; %s", shown, example)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return nil, fmt.Sprintf("%s has a path, query or fragment: a proxy is only http://[user:pass@]host[:port]", shown)
	}
	if strings.HasSuffix(u.Host, ":") {
		return nil, fmt.Sprintf("%s has an empty port", shown)
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 64)
		switch {
		case err != nil:
			return nil, fmt.Sprintf("%s has port %q, which is not a number", shown, clip(port))
		case n < 1 || n > 65535:
			return nil, fmt.Sprintf("%s has port %d, out of range 1..65535", shown, n)
		}
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
		return nil, fmt.Sprintf("%s has host %q, which is neither an IP address nor a valid host name", shown, clip(host))
	}
	return u, ""
}

// redactProxy hides what follows the first ':' of the user information
// of a proxy URL that does not parse, so that no password is quoted.
func redactProxy(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	start := strings.Index(s, "://") + 3
	if start < 3 || start > at {
		start = 0
	}
	if colon := strings.IndexByte(s[start:at], ':'); colon >= 0 {
		return s[:start+colon+1] + "xxxxx" + s[at:]
	}
	return s
}

// validateMultipath checks the multipath, redundancy and duplicate keys of
// peer i: set only on a peer this side dials, redundancy only with
// redundant, valid rules, at most MaxDuplicateRules of them, none twice,
// and at least two uplinks for anything but plain failover.
func (c *Config) validateMultipath(p *problems, i int, label string) {
	pr := &c.Peers[i]
	bad := pr.pos.bad
	// A key is set when it is in the file or, in a Config built in code,
	// when its field is not the zero value.
	multipathSet := pr.pos.has("multipath") || pr.Multipath != MultipathDefault
	redundancySet := pr.pos.has("redundancy") || pr.Redundancy != RedundancyTwo
	duplicateSet := pr.pos.has("duplicate") || len(pr.Duplicate) > 0
	if pr.Endpoint == "" && !bad["endpoint"] {
		for _, k := range []struct {
			name string
			set  bool
		}{{"multipath", multipathSet}, {"redundancy", redundancySet}, {"duplicate", duplicateSet}} {
			if k.set {
				p.addf(pr.pos.line(k.name), "%s %s is set by the site: without an endpoint this node does not dial the peer and applies the mode the peer announces; set %s in the peer's own [[peer]] for this node", label, k.name, k.name)
			}
		}
		return
	}

	modeOK := !bad["multipath"]
	if modeOK && int(pr.Multipath) >= len(multipathNames) {
		p.addf(pr.pos.line("multipath"), "%s multipath %v is not one of off, failover, redundant, aggregate", label, pr.Multipath)
		modeOK = false
	}
	switch {
	case bad["redundancy"] || !redundancySet:
	case int(pr.Redundancy) >= len(redundancyNames):
		p.addf(pr.pos.line("redundancy"), `%s redundancy %v is not "two" or "all"`, label, pr.Redundancy)
	case modeOK && pr.Multipath != MultipathRedundant:
		mode := strconv.Quote(pr.Multipath.String())
		if pr.Multipath == MultipathDefault {
			mode = "not set"
		}
		p.addf(pr.pos.line("redundancy"), `%s redundancy applies only to multipath = "redundant", but multipath is %s: remove redundancy or set multipath = "redundant"`, label, mode)
	}

	line := pr.pos.line("duplicate")
	if n := len(pr.Duplicate); n > MaxDuplicateRules {
		p.addf(line, "%s duplicate has %d rules, at most %d are allowed", label, n, MaxDuplicateRules)
	}
	seen := make(map[classify.Rule]bool, len(pr.Duplicate))
	for _, r := range pr.Duplicate {
		switch {
		case !r.IsValid():
			p.addf(line, "%s has an invalid rule in duplicate", label)
		case seen[r]:
			p.addf(line, "%s duplicate lists rule %s twice", label, r)
		}
		seen[r] = true
	}

	if modeOK && pr.Multipath == MultipathOff && len(pr.Duplicate) > 0 {
		p.addf(line, `%s duplicate needs a connection per uplink, but multipath is "off": remove duplicate or multipath`, label)
	}

	// Every mode but failover, and duplicate, need a second path, and a
	// site has one path per uplink.
	in := &c.Interface
	if in.pos.bad[""] || in.pos.bad["uplinks"] || in.UplinksAny || len(in.Uplinks) >= 2 {
		return
	}
	why := `[interface] has no uplinks (one socket on the wildcard address): list them, e.g. uplinks = ["wlan0", "wwan0"], or write uplinks = "any"`
	if len(in.Uplinks) == 1 {
		why = fmt.Sprintf("[interface] uplinks lists only %q", in.Uplinks[0])
	}
	if modeOK && pr.Multipath > MultipathFailover {
		p.addf(pr.pos.line("multipath"), "%s multipath = %q needs at least two uplinks, but %s", label, pr.Multipath, why)
	}
	if len(pr.Duplicate) > 0 {
		p.addf(line, "%s duplicate needs at least two uplinks, but %s", label, why)
	}
}

// mappedFix says how to write the IPv4-mapped prefix pfx.
func mappedFix(pfx netip.Prefix) string {
	if pfx.Bits() >= 96 {
		return fmt.Sprintf("write the IPv4 prefix %s", netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96))
	}
	return "write it as an IPv4 prefix, or as an IPv6 prefix outside ::ffff:0:0/96"
}

// owned is one allowed-IPs prefix and the peer it belongs to.
type owned struct {
	pfx  netip.Prefix
	peer int
	line int
}

// maxOverlapReports is how many allowed_ips overlaps validateOverlaps
// reports one by one; the rest are counted in one more problem, so that a
// file of 10,000 peers that all share a prefix gives 21 lines, not one per
// pair (50 million).
const maxOverlapReports = 20

// validateOverlaps reports each prefix (in file order) that overlaps a
// prefix of another peer that comes before it in the file, once, naming
// the first such prefix, unless both peers have a priority and the
// priorities differ (a site's hubs that share prefixes). The first
// maxOverlapReports are reported; the rest are counted.
//
// Two prefixes overlap when one contains the other, so the prefixes that
// overlap a prefix are the ones that contain it and the ones it contains.
// findOverlaps sorts the prefixes and sweeps them once with a stack of the
// enclosing ones: O(n log n) time and O(n) memory for n prefixes, however
// many pairs overlap.
func (c *Config) validateOverlaps(p *problems, owners []owned) {
	// A peer whose priority is bad is reported as such and left out.
	var ok []owned
	for _, o := range owners {
		if !c.Peers[o.peer].pos.bad["priority"] {
			ok = append(ok, o)
		}
	}
	first := findOverlaps(ok, func(i int) int {
		if pr := &c.Peers[ok[i].peer]; pr.HasPriority {
			return pr.Priority
		}
		return -1
	})
	reported := 0
	for j, i := range first {
		if i < 0 {
			continue
		}
		a, b := ok[i], ok[j]
		if reported == maxOverlapReports {
			more := 0
			for _, i := range first[j:] {
				if i >= 0 {
					more++
				}
			}
			p.addf(b.line, "and %d more allowed_ips that overlap those of another peer, from this line on (only the first %d are shown)", more, maxOverlapReports)
			return
		}
		reported++
		pa, pb := &c.Peers[a.peer], &c.Peers[b.peer]
		la, lb := peerLabel(a.peer, pa), peerLabel(b.peer, pb)
		if !pa.HasPriority || !pb.HasPriority {
			p.addf(b.line, "%s allowed_ips %s overlaps %s of %s (line %d); peers may share allowed_ips only when each sets priority (lower is preferred)",
				lb, b.pfx, a.pfx, la, a.line)
		} else {
			p.addf(pb.pos.line("priority"), "%s allowed_ips %s overlaps %s of %s (line %d) and both have priority %d: give them different priorities (lower is preferred)",
				lb, b.pfx, a.pfx, la, a.line, pa.Priority)
		}
	}
}

// findOverlaps returns, for each of the prefixes os (valid and masked),
// the index of the first prefix before it in os that overlaps it, belongs
// to another peer and conflicts with it, or -1 for none. Two prefixes
// conflict unless both peers have a priority (prio(i) >= 0) and the
// priorities differ.
func findOverlaps(os []owned, prio func(i int) int) []int {
	// Sort into groups of equal prefixes, each group after the groups that
	// contain it: by family, then address, then shorter first. The prefixes
	// that contain a group's are then the groups on the sweep's stack, and
	// the ones it contains follow it.
	order := make([]int, len(os))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		a, b := os[i].pfx, os[j].pfx
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Bits(), b.Bits()); c != 0 {
			return c
		}
		return cmp.Compare(i, j)
	})
	type group struct {
		pfx    netip.Prefix
		lo, hi int       // its members: order[lo:hi]
		own    conflicts // of its members
		inside conflicts // of the members of the groups it contains
		parent int       // index in groups of the nearest group containing it, or -1
	}
	var groups []group
	var stack []int // indexes in groups, each containing the next
	for k := 0; k < len(order); {
		pfx := os[order[k]].pfx
		g := group{pfx: pfx, lo: k, parent: -1}
		for ; k < len(order) && os[order[k]].pfx == pfx; k++ {
			g.own.add(order[k], os[order[k]].peer, prio(order[k]))
		}
		g.hi = k
		for len(stack) > 0 && !groups[stack[len(stack)-1]].pfx.Overlaps(pfx) {
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 {
			g.parent = stack[len(stack)-1]
		}
		stack = append(stack, len(groups))
		groups = append(groups, g)
	}
	// Fold each group into its parent's inside, innermost first: a group
	// comes after its parent, so going backwards sees it first.
	for gi := len(groups) - 1; gi >= 0; gi-- {
		if pi := groups[gi].parent; pi >= 0 {
			groups[pi].inside.merge(&groups[gi].own)
			groups[pi].inside.merge(&groups[gi].inside)
		}
	}
	first := make([]int, len(os))
	for gi := range groups {
		g := &groups[gi]
		for _, i := range order[g.lo:g.hi] {
			peer, pr := os[i].peer, prio(i)
			best := min(g.own.first(peer, pr), g.inside.first(peer, pr))
			for a := g.parent; a >= 0; a = groups[a].parent {
				best = min(best, groups[a].own.first(peer, pr))
			}
			first[i] = -1
			if best < i {
				first[i] = best
			}
		}
	}
	return first
}

// conflicts summarises a set of prefixes for findOverlaps: for each class
// (any, no priority, each priority) the first two members of distinct
// peers, which is all it takes to find the first member of another peer.
type conflicts struct {
	any, noPrio firstTwo
	byPrio      map[int]*firstTwo // or nil
}

// firstTwo is the first member of a set and the first member of another
// peer, by index; -1 for none.
type firstTwo struct {
	set               bool
	i, peer, j, peerJ int
}

func (f *firstTwo) add(i, peer int) {
	switch {
	case !f.set:
		*f = firstTwo{set: true, i: i, peer: peer, j: -1, peerJ: -1}
	case i < f.i && peer == f.peer:
		f.i = i
	case i < f.i:
		f.j, f.peerJ = f.i, f.peer
		f.i, f.peer = i, peer
	case peer != f.peer && (f.j < 0 || i < f.j):
		f.j, f.peerJ = i, peer
	}
}

func (f *firstTwo) merge(o *firstTwo) {
	if o.set {
		f.add(o.i, o.peer)
		if o.j >= 0 {
			f.add(o.j, o.peerJ)
		}
	}
}

// first returns the first member of another peer than peer, or MaxInt.
func (f *firstTwo) first(peer int) int {
	switch {
	case !f.set:
		return math.MaxInt
	case f.peer != peer:
		return f.i
	case f.j >= 0:
		return f.j
	}
	return math.MaxInt
}

func (c *conflicts) add(i, peer, prio int) {
	c.any.add(i, peer)
	if prio < 0 {
		c.noPrio.add(i, peer)
		return
	}
	c.prio(prio).add(i, peer)
}

// prio returns the conflicts of priority prio, made on first use.
func (c *conflicts) prio(prio int) *firstTwo {
	if c.byPrio == nil {
		c.byPrio = make(map[int]*firstTwo)
	}
	f := c.byPrio[prio]
	if f == nil {
		f = new(firstTwo)
		c.byPrio[prio] = f
	}
	return f
}

func (c *conflicts) merge(o *conflicts) {
	c.any.merge(&o.any)
	c.noPrio.merge(&o.noPrio)
	for prio, f := range o.byPrio {
		c.prio(prio).merge(f)
	}
}

// first returns the first member that conflicts with a prefix of peer
// with priority prio (-1 for none), or MaxInt.
func (c *conflicts) first(peer, prio int) int {
	if prio < 0 {
		return c.any.first(peer)
	}
	best := c.noPrio.first(peer)
	if f := c.byPrio[prio]; f != nil {
		best = min(best, f.first(peer))
	}
	return best
}

// validatePriority checks the priority of peer i: only on a peer this
// node dials (a site ranks its hubs), and not with multipath = "off" (a
// hub's failure is seen by the health of its connection set).
func (c *Config) validatePriority(p *problems, i int, label string) {
	pr := &c.Peers[i]
	if !pr.HasPriority {
		return
	}
	line := pr.pos.line("priority")
	if pr.Priority < 0 || pr.Priority > MaxPriority {
		p.addf(line, "%s priority %d is out of range 0..%d", label, pr.Priority, MaxPriority)
	}
	if pr.Endpoint == "" && !pr.pos.bad["endpoint"] {
		p.addf(line, "%s priority needs endpoint: it ranks the hubs a site dials (a hub sees which one a site prefers); set endpoint too, or remove priority", label)
	}
	if pr.Multipath == MultipathOff && !pr.pos.bad["multipath"] {
		p.addf(pr.pos.line("multipath"), `%s multipath = "off" cannot go with priority: a hub's failure is judged by the health of its connection set; remove multipath (failover is the default with priority) or priority`, label)
	}
}

// peerLabel names peer i in messages: `peer "boat-1"`, or `[[peer]] #2` when
// it has no usable name.
func peerLabel(i int, pr *Peer) string {
	if validPeerName(pr.Name) {
		return fmt.Sprintf("peer %q", pr.Name)
	}
	return fmt.Sprintf("[[peer]] #%d", i+1)
}

// validPeerName reports whether s matches [A-Za-z0-9._-]{1,64}.
func validPeerName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ifnameProblem says why s is not a valid Linux interface name (the rules of
// the kernel's dev_valid_name, plus no control characters), or "".
func ifnameProblem(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case len(s) > 15:
		return fmt.Sprintf("it is %d bytes long, at most 15 are allowed", len(s))
	case s == "." || s == "..":
		return `"." and ".." are not allowed`
	}
	for _, r := range s {
		switch {
		case r == '/' || r == ':':
			return fmt.Sprintf("%q is not allowed", r)
		case r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r':
			return "white space is not allowed"
		case r < 0x20 || r == 0x7f:
			return "control characters are not allowed"
		}
	}
	return ""
}

// hostPortProblem says what is wrong with s as "host:port", or "". For a
// listen address (example is the port-only form used in messages, such as
// ":4433") the host must be empty or an IP literal; for an endpoint (example
// "") it must be an IP literal or a host name.
func hostPortProblem(s, example string) string {
	listen := example != ""
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			if listen {
				return fmt.Sprintf(`has no port: write it as host:port, e.g. "0.0.0.0%[1]s", "[::]%[1]s" or "%[1]s"`, example)
			}
			return `has no port: write it as host:port, e.g. "hub.example.net:4433" or "[2001:db8::1]:4433"`
		}
		return "is not host:port: " + strings.TrimPrefix(err.Error(), "address "+s+": ")
	}
	n, err := strconv.ParseUint(port, 10, 64)
	switch {
	case err != nil && port == "":
		return "has an empty port"
	case err != nil:
		return fmt.Sprintf("has port %q, which is not a number", clip(port))
	case n < 1 || n > 65535:
		return fmt.Sprintf("has port %d, out of range 1..65535", n)
	}
	if listen {
		if host == "" {
			return ""
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Sprintf(`has host %q, which is not an IP address: give an address of this machine, or none (%q)`, clip(host), example)
		}
		return ""
	}
	if host == "" {
		return "has no host"
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if !validHostname(host) {
		return fmt.Sprintf("has host %q, which is neither an IP address nor a valid host name", clip(host))
	}
	return ""
}

// validHostname reports whether s is a DNS name: labels of letters, digits,
// '-' and '_' (not starting or ending with '-'), at most 63 bytes each, 253
// in all, with a last label that is not all digits.
func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// levelName returns the log_level name of l, and whether it has one.
func levelName(l slog.Level) (string, bool) {
	n := strings.ToLower(l.String())
	_, ok := logLevels[n]
	return n, ok
}

// validateUplinks checks the uplinks array: at least one name, each a valid
// Linux interface name, no duplicates, not the TUN itself.
func (in *Interface) validateUplinks(p *problems) {
	if in.Uplinks == nil {
		return
	}
	line := in.pos.line("uplinks")
	if len(in.Uplinks) == 0 {
		p.addf(line, `uplinks is empty: list at least one interface, write "any", or leave the key out for one wildcard socket`)
		return
	}
	seen := make(map[string]bool, len(in.Uplinks))
	for _, n := range in.Uplinks {
		switch {
		case n == "any":
			p.addf(line, `uplinks entry "any": write uplinks = "any" (a string, not in an array) to use every uplink`)
		case ifnameProblem(n) != "":
			p.addf(line, "uplinks entry %q is not a valid Linux interface name: %s", clip(n), ifnameProblem(n))
		case n == in.Name:
			p.addf(line, "uplinks entry %q is the tunnel interface itself", n)
		case seen[n]:
			p.addf(line, "uplinks entry %q is listed twice", n)
		}
		seen[n] = true
	}
}
