// SPDX-License-Identifier: MIT

package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/tunnel/classify"
)

// Defaults for the optional [interface] keys. Parse applies them to keys that
// the file leaves out; [Config.SetDefaults] applies them to zero fields.
const (
	DefaultName     = "gw0"
	DefaultMTU      = 1300
	DefaultStateDir = "/var/lib/godwit"
	DefaultFwMark   = 0x4757 // 18263, "GW"
	DefaultTable    = 18263

	// DefaultReadyWait is how long a site waits for its first peer before
	// it reports READY to systemd anyway.
	DefaultReadyWait = 20 * time.Second
	// MaxReadyWait is the largest ready_wait accepted.
	MaxReadyWait = 10 * time.Minute

	// DefaultKeepAlive is the QUIC keep-alive period of dialed connections:
	// often enough for cellular NATs, which commonly drop idle UDP
	// mappings after 30 s or more.
	DefaultKeepAlive = 15 * time.Second
	// MinKeepAlive and MaxKeepAlive bound keepalive.
	MinKeepAlive = time.Second
	MaxKeepAlive = 5 * time.Minute

	// MaxDuplicateRules is the most rules one peer's duplicate may list.
	MaxDuplicateRules = 64

	// DefaultRouteProtocol is the routing-protocol number ("proto" in
	// ip-route(8)) of every route Godwit installs, so that BIRD's kernel
	// protocol (krt_source) or FRR can pick out exactly Godwit's routes.
	// 77 is not taken in iproute2's rt_protos.
	DefaultRouteProtocol = 77
	// MinRouteProtocol and MaxRouteProtocol bound route_protocol: 0..2 are
	// the kernel's (unspec, redirect, kernel).
	MinRouteProtocol = 3
	MaxRouteProtocol = 255

	// DefaultHoldDown is how long a site's preferred hub that failed must
	// be usable again before the site's traffic returns to it.
	DefaultHoldDown = 10 * time.Second
	// MaxHoldDown is the largest hold_down accepted.
	MaxHoldDown = 10 * time.Minute
	// MaxPriority is the largest priority of a [[peer]].
	MaxPriority = 65535
)

// Routes is when a hub keeps the kernel route to a peer's allowed-IPs
// (the routes key of [interface]).
type Routes uint8

const (
	// RoutesAlways (the default) installs every peer's routes at start.
	RoutesAlways Routes = iota
	// RoutesConnected keeps a peer's routes only while it is connected
	// and uses this node for its traffic (a site with several hubs says
	// which one it prefers), so that BIRD or FRR announce only what this
	// hub really reaches.
	RoutesConnected
)

// routesNames are the file's names of the Routes values, by value.
var routesNames = []string{"always", "connected"}

// String returns the name in the file ("always", "connected"), or
// "Routes(N)" for a value without one.
func (r Routes) String() string {
	if int(r) < len(routesNames) {
		return routesNames[r]
	}
	return fmt.Sprintf("Routes(%d)", uint8(r))
}

// Config is a parsed configuration file. Parse and Load return it with the
// defaults applied and validated; after that it is plain data that the caller
// owns. Nothing in this package keeps a reference to it or changes it, so it
// may be shared read-only between goroutines.
type Config struct {
	Path      string // file the config came from; "" for Parse of unnamed bytes
	Interface Interface
	Peers     []Peer // in file order
}

// Interface is the [interface] table: this node.
type Interface struct {
	Name           string         // TUN device name; default "gw0"
	PrivateKeyFile string         // absolute path of the private key file (required)
	PrivateKey     key.Private    // read from PrivateKeyFile by Load; zero after Parse
	Addresses      []netip.Prefix // addresses on the TUN as written, host bits kept (10.77.0.1/24); at least one
	Listen         string         // "host:port" to accept peers on, host empty or an IP literal; "" when not listening
	MTU            int            // TUN MTU, 576..1500 (>= 1280 with an IPv6 address); default 1300
	StateDir       string         // absolute directory for session tickets and reset keys; default "/var/lib/godwit"
	FwMark         uint32         // SO_MARK of Godwit's own UDP sockets, never 0; default 0x4757
	Table          int            // routing table for full-tunnel default routes, 1..0xFFFFFFFE except 253..255; default 18263
	LogLevel       slog.Level     // one of slog.LevelDebug, LevelInfo, LevelWarn, LevelError; the zero value is info

	// ListenTCP is the TCP "host:port" (host empty or an IP literal) to
	// also accept peers on, over TLS on TCP, for sites whose network
	// blocks UDP; "" when not listening on TCP. It needs Listen: the TCP
	// listener is the fallback of the UDP one, and sites try UDP first.
	ListenTCP string

	// MetricsListen is the TCP "host:port" of the metrics endpoint, host
	// empty or an IP literal (e.g. "127.0.0.1:9586"); "" means no endpoint.
	MetricsListen string
	// QlogDir is the absolute directory for one qlog file per QUIC
	// connection; "" means no qlog from the file. The daemon (not this
	// package) then uses the QLOGDIR environment variable if it is set.
	QlogDir string
	// KeylogFile is the absolute path of a TLS key log file (NSS key log
	// format, for Wireshark) that every connection appends its secrets to;
	// "" means none from the file, and the daemon then uses the
	// SSLKEYLOGFILE environment variable if it is set. Anyone who can read
	// the file can decrypt the tunnel: for debugging only.
	KeylogFile string
	// ReadyWait is how long a site waits for its first peer to connect
	// before it reports READY to systemd anyway; 0 means at once. At most
	// MaxReadyWait. Parse sets DefaultReadyWait (20s) when the key is
	// missing and keeps an explicit "0s"; SetDefaults, which cannot tell
	// the two apart, replaces 0 with DefaultReadyWait.
	ReadyWait time.Duration
	// Uplinks are the interfaces a site may reach its hub through, most
	// preferred first (uplinks = ["wifi0", "cell0"]): the daemon keeps a
	// socket on each usable one and moves its connections between them.
	// Nil (key absent) means one socket on the wildcard address, as without
	// mobility; see UplinksAny for uplinks = "any".
	Uplinks []string
	// UplinksAny is uplinks = "any": every non-loopback link other than the
	// TUN that has a global address and a default route is an uplink,
	// preferred by lowest default-route metric. Uplinks is nil then.
	UplinksAny bool
	// KeepAlive is the QUIC keep-alive period of dialed connections,
	// MinKeepAlive..MaxKeepAlive; 0 (only in a Config built in code) and a
	// missing key mean DefaultKeepAlive (15 s).
	KeepAlive time.Duration

	// Routes is when the kernel routes to the peers' allowed-IPs exist:
	// always (the default), or only while a peer is connected and uses
	// this node (RoutesConnected, for hubs announced over BGP).
	Routes Routes
	// RouteProtocol is the protocol number of every route Godwit
	// installs, MinRouteProtocol..MaxRouteProtocol; 0 (only in a Config
	// built in code) and a missing key mean DefaultRouteProtocol (77).
	RouteProtocol int
	// HoldDown is how long a site's more preferred hub (see
	// Peer.Priority) that failed must be usable again before the traffic
	// returns to it, 0..MaxHoldDown. Like ReadyWait, Parse sets
	// DefaultHoldDown (10 s) when the key is missing and keeps an
	// explicit "0s" (return at once); SetDefaults replaces 0.
	HoldDown time.Duration

	// TableOff is table = "off": Godwit installs no routes and no policy
	// rules at all (the TUN still gets its addresses); routing is left to
	// the operator or to BIRD or FRR, as wg-quick's Table = off does.
	TableOff bool
	// KillSwitch keeps traffic from leaving outside the tunnel while the
	// daemon runs, restarts or is down after a crash (kill_switch = true):
	// only the TUN, loopback, Godwit's own marked sockets, IPv6 link-local
	// and DHCP pass. It needs a peer with a default route (a full tunnel);
	// a clean stop lifts it.
	KillSwitch bool
	// PostUp are shell commands run, in order, once the TUN is up with its
	// addresses and routes, and PreDown before it goes on stop, as
	// wg-quick's PostUp and PreDown: with /bin/sh -c, "%i" replaced by the
	// interface name, which is also in the environment as
	// GODWIT_INTERFACE. A failing PostUp command fails the start.
	PostUp, PreDown []string

	pos position // where the keys were in the file, if parsed
}

// Peer is one [[peer]] table: a node that may connect to this one, pinned by
// its public key.
type Peer struct {
	Name       string         // unique, [A-Za-z0-9._-]{1,64}
	PublicKey  key.Public     // unique among peers, never zero
	AllowedIPs []netip.Prefix // routed to this peer and accepted as source from it; canonical (host bits zero), at least one
	Endpoint   string         // "host:port" to dial, host a name or IP literal; "" when this side does not dial the peer
	Line       int            // line of this peer's [[peer]] header, for messages; 0 when not parsed from a file

	// EndpointTCP is the peer's TCP "host:port" (its listen_tcp) to dial
	// over TLS on TCP when UDP to Endpoint gets no answer; "" for no TCP
	// fallback. It needs Endpoint. A peer with it is dialed as a
	// connection set (its UDP connections and, while UDP is blocked, the
	// TCP one), so multipath cannot be "off" (see [Config.PathMode]).
	EndpointTCP string
	// TCPProxy is an HTTP proxy URL, "http://[user:pass@]host[:port]"
	// (port 80 when absent), that EndpointTCP is reached through with
	// CONNECT; "" dials EndpointTCP directly. It needs EndpointTCP.
	TCPProxy string

	// Multipath, Redundancy and Duplicate say how a site uses its
	// uplinks to reach this peer: one QUIC connection per uplink and a
	// schedule over them, or (multipath = "off") one connection that moves
	// between uplinks. The side that dials sets them, so they need an
	// Endpoint: a peer that dials in announces its own, and this side
	// applies that.

	// Multipath is how packets to the peer are spread over the healthy
	// paths. The zero value, MultipathDefault, is failover on a site with
	// two or more uplinks (or uplinks = "any") and off otherwise: see
	// [Config.PathMode]. A mode other than off and failover needs at
	// least two uplinks in [interface].
	Multipath Multipath
	// Redundancy is how many paths MultipathRedundant sends each packet
	// on; the zero value is RedundancyTwo. Any other value needs
	// Multipath to be MultipathRedundant.
	Redundancy Redundancy
	// Duplicate lists the rules of packets that are also sent on a second
	// healthy path, in any mode: at most MaxDuplicateRules, no rule twice,
	// every rule valid; nil for none. It needs at least two uplinks in
	// [interface].
	Duplicate []classify.Rule

	// Priority ranks the hubs of a site that share allowed-IPs: lower is
	// preferred, 0..MaxPriority. It counts only with HasPriority (the key
	// is in the file). Peers may have overlapping allowed-IPs only when
	// each has a priority, and different ones; the site connects to all
	// of them and sends the traffic of a shared prefix to the most
	// preferred usable one. It needs Endpoint, and makes failover the
	// default mode (the hubs' health is judged per connection).
	Priority    int
	HasPriority bool

	// KeepAlive is the QUIC keep-alive period of the connections this node
	// dials to the peer, MinKeepAlive..MaxKeepAlive, overriding the
	// [interface]'s; 0 means the [interface]'s. It needs Endpoint.
	KeepAlive time.Duration

	pos position
}

// Multipath is how a site spreads the packets to one peer over its paths
// (the multipath key of a [[peer]]).
type Multipath uint8

const (
	// MultipathDefault (no multipath key) is failover on a site with two
	// or more uplinks, off otherwise.
	MultipathDefault Multipath = iota
	// MultipathOff keeps one connection to the peer, which moves between
	// uplinks.
	MultipathOff
	// MultipathFailover sends all packets on the best healthy path.
	MultipathFailover
	// MultipathRedundant sends every packet on the two best healthy paths,
	// or on all of them with RedundancyAll.
	MultipathRedundant
	// MultipathAggregate spreads flows over the healthy paths.
	MultipathAggregate
)

// multipathNames are the file's names of the Multipath values, by value;
// MultipathDefault has none.
var multipathNames = []string{"", "off", "failover", "redundant", "aggregate"}

// String returns the mode's name in the file ("off", "failover",
// "redundant", "aggregate"), "default" for MultipathDefault, or
// "Multipath(N)" for a value without one.
func (m Multipath) String() string {
	switch {
	case m == MultipathDefault:
		return "default"
	case int(m) < len(multipathNames):
		return multipathNames[m]
	}
	return fmt.Sprintf("Multipath(%d)", uint8(m))
}

// PathMode is the mode this node uses for peer p: MultipathOff for one
// connection (also for a peer it does not dial), or the mode of its
// connection set. Without a multipath key a site with two or more uplinks
// (or uplinks = "any"), a peer with duplicate rules, or a peer with
// endpoint_tcp (its TCP fallback is a second connection of the set) or a
// priority (a hub's health is judged per connection) uses failover.
func (c *Config) PathMode(p *Peer) Multipath {
	switch {
	case p.Endpoint == "":
		return MultipathOff
	case p.Multipath != MultipathDefault:
		return p.Multipath
	case len(p.Duplicate) > 0 || p.EndpointTCP != "" || p.HasPriority || c.Interface.UplinksAny || len(c.Interface.Uplinks) >= 2:
		return MultipathFailover
	}
	return MultipathOff
}

// Redundancy is how many paths MultipathRedundant sends each packet on
// (the redundancy key of a [[peer]]).
type Redundancy uint8

const (
	// RedundancyTwo, the default, sends on the two best healthy paths.
	RedundancyTwo Redundancy = iota
	// RedundancyAll sends on every healthy path.
	RedundancyAll
)

// redundancyNames are the file's names of the Redundancy values, by value.
var redundancyNames = []string{"two", "all"}

// String returns the name in the file ("two", "all"), or "Redundancy(N)"
// for a value without one.
func (r Redundancy) String() string {
	if int(r) < len(redundancyNames) {
		return redundancyNames[r]
	}
	return fmt.Sprintf("Redundancy(%d)", uint8(r))
}

// position records where the keys of one table were in the file, for
// messages, and which keys had values that could not be decoded (so that
// Validate does not report them a second time as missing).
type position struct {
	header int            // line of the table header, 0 if unknown
	keys   map[string]int // key -> line
	bad    map[string]bool
}

// line returns the line of key, or the header line when key is not in the
// file (or when key is "").
func (p position) line(key string) int {
	if l, ok := p.keys[key]; ok {
		return l
	}
	return p.header
}

// has reports whether key was written in the file.
func (p position) has(key string) bool {
	_, ok := p.keys[key]
	return ok
}

// SetDefaults sets every optional [interface] field that is zero to its
// default: Name, MTU, StateDir, FwMark, Table, ReadyWait, KeepAlive,
// RouteProtocol and HoldDown (LogLevel's
// zero value is already the default, info; MetricsListen, QlogDir and
// KeylogFile are off by default). Code that wants ReadyWait 0 (READY at
// once) sets it after SetDefaults. It is for configs built in code; Parse applies
// the same defaults only to keys missing from the file, so that an explicit
// `fwmark = 0` is reported rather than replaced.
func (c *Config) SetDefaults() {
	in := &c.Interface
	if in.Name == "" {
		in.Name = DefaultName
	}
	if in.MTU == 0 {
		in.MTU = DefaultMTU
	}
	if in.StateDir == "" {
		in.StateDir = DefaultStateDir
	}
	if in.FwMark == 0 {
		in.FwMark = DefaultFwMark
	}
	if in.Table == 0 {
		in.Table = DefaultTable
	}
	if in.ReadyWait == 0 {
		in.ReadyWait = DefaultReadyWait
	}
	if in.KeepAlive == 0 {
		in.KeepAlive = DefaultKeepAlive
	}
	if in.RouteProtocol == 0 {
		in.RouteProtocol = DefaultRouteProtocol
	}
	if in.HoldDown == 0 {
		in.HoldDown = DefaultHoldDown
	}
}

// Equal reports whether in and o hold the same settings, PrivateKey included.
// Where the keys were in the file does not matter.
func (in Interface) Equal(o Interface) bool {
	return in.Name == o.Name && in.PrivateKeyFile == o.PrivateKeyFile && in.PrivateKey == o.PrivateKey &&
		slices.Equal(in.Addresses, o.Addresses) && in.Listen == o.Listen && in.ListenTCP == o.ListenTCP && in.MTU == o.MTU &&
		in.StateDir == o.StateDir && in.FwMark == o.FwMark && in.Table == o.Table && in.LogLevel == o.LogLevel &&
		in.MetricsListen == o.MetricsListen && in.QlogDir == o.QlogDir && in.KeylogFile == o.KeylogFile &&
		in.ReadyWait == o.ReadyWait && slices.Equal(in.Uplinks, o.Uplinks) && in.UplinksAny == o.UplinksAny &&
		in.KeepAlive == o.KeepAlive && in.Routes == o.Routes && in.RouteProtocol == o.RouteProtocol && in.HoldDown == o.HoldDown &&
		in.TableOff == o.TableOff && in.KillSwitch == o.KillSwitch && slices.Equal(in.PostUp, o.PostUp) && slices.Equal(in.PreDown, o.PreDown)
}

// Equal reports whether p and q hold the same settings (Name, PublicKey,
// AllowedIPs in order, Endpoint, EndpointTCP, TCPProxy, Multipath,
// Redundancy, Duplicate in order, Priority). Line is ignored, so a reload can tell whether a peer changed even
// when it moved in the file.
func (p Peer) Equal(q Peer) bool {
	return p.Name == q.Name && p.PublicKey == q.PublicKey && slices.Equal(p.AllowedIPs, q.AllowedIPs) && p.Endpoint == q.Endpoint &&
		p.EndpointTCP == q.EndpointTCP && p.TCPProxy == q.TCPProxy && p.Multipath == q.Multipath && p.Redundancy == q.Redundancy && slices.Equal(p.Duplicate, q.Duplicate) &&
		p.HasPriority == q.HasPriority && (!p.HasPriority || p.Priority == q.Priority) && p.KeepAlive == q.KeepAlive
}

// Peer returns the peer with public key k, and whether there is one.
func (c *Config) Peer(k key.Public) (Peer, bool) {
	for _, p := range c.Peers {
		if p.PublicKey == k {
			return p, true
		}
	}
	return Peer{}, false
}

// Parse decodes a configuration from data, applies defaults for missing
// optional keys and validates it. name is the file name used in messages
// ("" for none). Parse does not touch the file system: Interface.PrivateKey
// stays zero (see Load). On failure the error joins one *Error per problem
// found, sorted by line.
func Parse(name string, data []byte) (*Config, error) {
	c, p := parse(name, data)
	if err := p.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// parse returns the config (nil when the TOML itself could not be decoded)
// and every problem found in it.
func parse(name string, data []byte) (*Config, *problems) {
	p := &problems{file: name}
	c := decode(name, data, p)
	if c != nil {
		c.validate(p)
	}
	return c, p
}

// MaxFileSize is the largest config file Load reads: a hub with 10,000
// peers needs about 1.5 MB.
const MaxFileSize = 4 << 20

// Load reads the configuration file at path, which must be a regular file of
// at most MaxFileSize bytes, parses it like Parse, then reads
// the private key from Interface.PrivateKeyFile (see [ReadPrivateKeyFile] for
// the checks) and checks that no peer has this node's own public key. The
// private key file is read even when the config has other problems, so that
// one run reports everything. Load only reads files.
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, p := parse(path, data)
	if c != nil && c.Interface.PrivateKeyFile != "" && !c.Interface.pos.bad["private_key_file"] {
		c.loadKey(p)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// loadKey reads the private key file into c and checks it against the peers.
func (c *Config) loadKey(p *problems) {
	in := &c.Interface
	k, err := readPrivateKeyFile(in.PrivateKeyFile)
	if err != nil {
		p.addErr(in.pos.line("private_key_file"), err.Error(), errors.Unwrap(err))
		return
	}
	in.PrivateKey = k
	own := k.Public()
	for _, pr := range c.Peers {
		if pr.PublicKey == own {
			p.addf(pr.pos.line("public_key"), "peer %q has this node's own public key (the key in %s): a node cannot be its own peer", pr.Name, in.PrivateKeyFile)
		}
	}
}

// readFile reads the config file at path. It refuses at once what is not a
// regular file (a FIFO would block until a writer comes, /dev/zero never
// ends) and a file over MaxFileSize, before reading it whole.
func readFile(path string) ([]byte, error) {
	// Refuse a FIFO before opening it: opening one blocks. The descriptor
	// is checked again below.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s): give the path of a TOML file", path, fileKind(fi.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s): give the path of a TOML file", path, fileKind(fi.Mode()))
	}
	tooBig := func(n int64) error {
		return fmt.Errorf("%s is %d bytes, over the limit of %d bytes (4 MiB) for a config file", path, n, MaxFileSize)
	}
	if fi.Size() > MaxFileSize {
		return nil, tooBig(fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize { // grew since the Stat
		return nil, tooBig(int64(len(data)))
	}
	return data, nil
}

// fileKind names the type of a file that is not a regular file.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeDir != 0:
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "mode " + m.Type().String()
}
