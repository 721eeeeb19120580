// SPDX-License-Identifier: MIT

// Package config reads Godwit's TOML configuration file, applies defaults and
// validates it, reporting every problem at once with file and line. It never
// touches the host: [Parse] reads no files at all, [Load] reads only the
// config file and the private key file it names.
//
// The file has one [interface] table (this node) and one [[peer]] table per
// node it talks to; keys not listed here are errors:
//
//	[interface]
//	name = "gw0"                               # TUN device; default "gw0"
//	private_key_file = "/etc/godwit/gw0.key"   # required, absolute; 0600, trusted owner and directories (see ReadPrivateKeyFile)
//	addresses = ["10.77.0.1/24", "fd77::1/64"] # required: prefixes on the TUN, host bits kept
//	listen = "[::]:4433"                       # optional: accept peers here; host empty or an IP
//	listen_tcp = "[::]:443"                    # optional, needs listen: also accept peers over TLS on TCP
//	mtu = 1300                                 # 576..1500, >= 1280 with IPv6; default 1300; 1415 fits 1500-byte paths
//	state_dir = "/var/lib/godwit"              # default "/var/lib/godwit"
//	fwmark = 0x4757                            # SO_MARK of Godwit's own sockets; default 0x4757
//	table = 18263                              # routing table for full tunnel; default 18263; "off": no routes or rules at all
//	log_level = "info"                         # debug, info, warn or error; default info
//	metrics_listen = "127.0.0.1:9586"          # optional: TCP metrics endpoint; host empty or an IP
//	qlog_dir = "/var/log/godwit/qlog"          # optional, absolute: one qlog file per QUIC connection
//	keylog_file = "/root/godwit.keys"          # optional, absolute: TLS secrets for Wireshark (debug only)
//	ready_wait = "20s"                         # 0s..10m, Go syntax: wait for the first peer before READY; default 20s
//	uplinks = ["wlan0", "wwan0"]               # optional: a site's uplinks, preferred first, or "any"; default one wildcard socket
//	keepalive = "15s"                          # 1s..5m: QUIC keep-alive of dialed connections; default 15s
//	routes = "connected"                       # "always" (default) or "connected": a peer's routes only while it uses this hub
//	route_protocol = 77                        # 3..255: "proto" of Godwit's routes, for BIRD or FRR; default 77
//	hold_down = "10s"                          # 0s..10m: a site's preferred hub must be healthy this long to get traffic back; default 10s
//	kill_switch = true                         # optional, full tunnel only: nothing leaves outside the tunnel, also while the daemon is down
//	post_up = ["nft -f /etc/godwit/%i.nft"]    # optional: shell commands once the TUN is up (%i: the interface); a failure fails the start
//	pre_down = "logger godwit %i going down"   # optional: shell commands before the TUN goes on stop
//
//	[[peer]]
//	name = "boat-1"                                    # required, unique, [A-Za-z0-9._-]{1,64}
//	public_key = "base64..."                           # required, unique: 32-byte Ed25519 key
//	allowed_ips = ["10.77.0.2/32", "192.168.20.0/24"]  # required: routed to the peer, accepted from it
//	endpoint = "hub.example.net:4433"                  # optional: dial this peer
//	endpoint_tcp = "hub.example.net:443"               # optional, needs endpoint: the peer's listen_tcp, for when UDP is blocked
//	tcp_proxy = "http://user:pass@proxy.example:3128"  # optional, needs endpoint_tcp: reach it through this HTTP proxy (CONNECT)
//	multipath = "redundant"                            # with endpoint: off, failover, redundant or aggregate
//	redundancy = "all"                                 # with multipath = "redundant": "two" or "all" paths; default "two"
//	duplicate = ["udp:16384-32767", "dscp:46"]         # with endpoint: also send these packets on a second path
//	priority = 1                                       # with endpoint, 0..65535: ranks hubs that share allowed_ips; lower is preferred
//	keepalive = "25s"                                  # with endpoint, 1s..5m: this peer's keep-alive instead of the [interface]'s
//
// Allowed-IPs must not overlap between peers, unless both set priority
// with different values (a site's hubs), must not have host bits set,
// and must not contain the peer's own endpoint address (except a default
// route, which the fwmark and table keep apart). A node needs a listen
// address or at least one peer endpoint.
//
// A site with several uplinks keeps one QUIC connection per uplink to each
// peer it dials, and multipath says how it uses them (without the key:
// failover with two or more uplinks; "off" keeps one connection that moves
// between uplinks, the behaviour without uplinks): "failover" sends all
// traffic on the best healthy path, "redundant" sends every packet on the
// two best healthy paths (on all of them with redundancy = "all"), and
// "aggregate" spreads flows over the paths. duplicate lists at most 64
// rules; packets that match one are also sent on a second healthy path,
// in any mode. A rule is udp:PORT, tcp:PORT, udp:LO-HI or tcp:LO-HI (the
// source or destination port), dscp:N (0-63), or an IPv4 or IPv6 prefix
// (the source or destination address, any protocol); there is no icmp rule.
// The three keys belong to the side that dials: a hub applies the mode the
// site announces, so they are errors on a peer without endpoint. Also
// errors: redundancy with another mode, and a mode other than failover, or
// duplicate, with fewer than two uplinks (uplinks = "any" counts as enough).
//
// listen_tcp and endpoint_tcp are the fallback for networks that block
// UDP: a site whose UDP gets no answer reaches the hub over TLS on TCP
// (through tcp_proxy if set) as one more connection of the peer's set, and
// goes back to UDP when it works again. So endpoint_tcp makes failover the
// default mode even without uplinks, and multipath = "off" is an error
// with it. listen_tcp needs listen (the sites try UDP first); endpoint_tcp
// needs endpoint; tcp_proxy needs endpoint_tcp and must be
// http://[user:pass@]host[:port] (port 80 when left out). Like endpoint,
// an endpoint_tcp or a proxy address inside the peer's allowed_ips is an
// error.
//
// A site may list several hubs whose allowed_ips overlap when each sets
// priority (different values): it connects to all of them, sends the
// traffic of a shared prefix to the most preferred healthy one, moves to
// the next when that one goes silent or shuts down, and returns once it
// was healthy again for hold_down. priority makes failover the default
// mode (a hub's health is judged per connection), so multipath = "off" is
// an error with it. The site tells each hub whether it carries its
// traffic; a hub with routes = "connected" keeps a site's routes in its
// kernel only while the site is connected and uses it, so that BIRD or FRR
// announce them over BGP from the hub that really reaches the site. Every
// route Godwit installs carries route_protocol ("ip route show proto 77").
//
// When qlog_dir or keylog_file is left out, the daemon (not this package,
// which never reads the environment) uses the QLOGDIR or SSLKEYLOGFILE
// environment variable instead, if set, as quic-go's tools do. An empty
// string is the same as leaving the key out.
//
// Keys are Ed25519: a private key is the 32-byte seed, and both private and
// public keys are written in standard base64, like `wg genkey | wg pubkey`.
//
// Errors are *[Error] values (file, line, message) joined with
// [errors.Join], sorted by line. The package keeps no state: every function
// may be called from any goroutine.
package config
