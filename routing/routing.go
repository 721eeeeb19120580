// SPDX-License-Identifier: MIT

// Package routing manages Godwit's state in the host's network stack: the
// TUN link's MTU, up state and addresses, a route for every peer's
// allowed-IPs, and the wg-quick style policy rules and table that keep the
// daemon's own (marked) UDP traffic out of the tunnel when a peer carries a
// default route.
//
// A [Manager] is declarative and idempotent, like Tailscale's Linux router:
// [Manager.Set] computes the wanted state from a [Config], diffs it against
// what the Manager installed before, applies only the difference, and keeps
// going when one operation fails, returning all errors joined. Everything
// the Manager installs it remembers, so [Manager.Close] removes exactly that.
// [CleanUp] removes the leftovers of a crashed run without any state.
//
// All netlink calls go through a small unexported interface so the logic can
// be tested against a recording fake; the real implementation converts
// net/netip values to netlink types only at the call.
package routing

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Defaults applied when the corresponding Config or Options field is zero.
const (
	// DefaultTable is the routing table that holds default routes
	// (0.0.0.0/0, ::/0) routed into the tunnel.
	DefaultTable = 18263
	// DefaultFwMark is the SO_MARK carried by Godwit's own UDP sockets; the
	// policy rule sends every packet without it to the tunnel table.
	DefaultFwMark uint32 = 0x4757
	// DefaultRulePriority is the first of the two policy-rule priorities
	// used (5300 and 5301).
	DefaultRulePriority = 5300
)

// mainTable is the kernel's main routing table (RT_TABLE_MAIN).
const mainTable = 254

// ErrClosed is returned by [Manager.Set] after [Manager.Close].
var ErrClosed = errors.New("routing: manager closed")

// Config is the wanted host state. The zero value of each field documents
// its default; a Config is only read by [Manager.Set], never retained or
// modified, so the caller may reuse it.
type Config struct {
	// Interface is the TUN link's name. The link must exist.
	Interface string
	// MTU is the link MTU; 0 leaves the link's MTU as it is.
	MTU int
	// Addrs are the addresses put on the link, with their prefix length,
	// for instance 10.77.0.1/24 and fd77::1/64. IPv6 addresses are added
	// with nodad so they are usable at once.
	Addrs []netip.Prefix
	// Routes are the prefixes routed into the link: every peer's
	// allowed-IPs. Host bits are ignored. A route already covered by one of
	// Addrs (the kernel's connected route) is skipped. Non-default prefixes
	// go into the main table; a default route (prefix length 0) goes into
	// Table, plus two policy rules for its family.
	Routes []netip.Prefix
	// Table is the routing table for default routes; 0 means DefaultTable.
	// The kernel's reserved tables 253 (default), 254 (main) and 255
	// (local) are rejected.
	Table int
	// FwMark is the SO_MARK on Godwit's own UDP sockets, exempted from the
	// tunnel table by a policy rule; 0 means DefaultFwMark.
	FwMark uint32
	// Covered installs also the routes inside the link's own subnets
	// (Addrs), which the kernel's connected route already sends to the
	// link: a hub that announces its sites' routes over BGP (routes =
	// "connected") must have a route of its own protocol for each, even a
	// site's tunnel address inside the hub's subnet.
	Covered bool
	// Protocol is the routing-protocol number of the routes ("proto" in
	// ip-route(8)), 0..255, so that BIRD or FRR can pick them out; 0
	// leaves the kernel's default (boot). A change replaces the routes.
	Protocol int
}

// Options configures a [Manager]. The zero value is valid.
type Options struct {
	// Logger receives state changes at Info and each operation at Debug;
	// nil discards.
	Logger *slog.Logger
	// RulePriority is the first of the two consecutive policy-rule
	// priorities used; 0 means DefaultRulePriority.
	RulePriority int
}

// Manager installs and removes host network state for one TUN link. Its
// methods are safe for concurrent use; they are serialized internally and
// block while netlink operations run.
type Manager struct {
	log  *slog.Logger
	nl   netlinker
	prio int

	// mu guards the following fields.
	mu     sync.Mutex
	closed bool
	link   linkInfo // link the link-bound state below lives on; zero before the first Set
	// sysctlIndex is the link index whose send_redirects was last set.
	sysctlIndex int
	addrs       map[netip.Prefix]bool // addresses this Manager added
	routes      map[route]bool        // routes this Manager added
	rules       map[rule]bool         // policy rules this Manager added
}

// New returns a Manager that talks to the kernel through a new netlink
// handle in the calling thread's network namespace. It installs nothing
// until [Manager.Set]. The caller must call [Manager.Close].
func New(opts Options) (*Manager, error) {
	if err := checkPriority(opts.RulePriority); err != nil {
		return nil, err
	}
	nl, err := newNetlink()
	if err != nil {
		return nil, err
	}
	return newManager(nl, opts), nil
}

func newManager(nl netlinker, opts Options) *Manager {
	prio := opts.RulePriority
	if prio == 0 {
		prio = DefaultRulePriority
	}
	return &Manager{
		log:    logger(opts),
		nl:     nl,
		prio:   prio,
		addrs:  make(map[netip.Prefix]bool),
		routes: make(map[route]bool),
		rules:  make(map[rule]bool),
	}
}

// checkPriority rejects rule priorities that are negative or would reach
// the kernel's default rules (32766 main, 32767 default).
func checkPriority(p int) error {
	if p < 0 || p > 32764 {
		return fmt.Errorf("routing: rule priority %d out of range 1..32764", p)
	}
	return nil
}

// logger returns opts.Logger for this package, or a discarding one.
func logger(opts Options) *slog.Logger {
	if opts.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return opts.Logger.With("component", "routing")
}

// wantState is a validated Config turned into the exact state to install.
type wantState struct {
	iface  string
	mtu    int
	addrs  map[netip.Prefix]bool
	routes map[route]bool
	rules  map[rule]bool
}

// want validates cfg and computes the state it asks for.
func (m *Manager) want(cfg *Config) (*wantState, error) {
	var errs []error
	if cfg.Interface == "" {
		errs = append(errs, errors.New("routing: config: empty interface name"))
	}
	if cfg.MTU < 0 || cfg.MTU > 65535 {
		errs = append(errs, fmt.Errorf("routing: config: mtu %d out of range", cfg.MTU))
	}
	table := cfg.Table
	if table == 0 {
		table = DefaultTable
	}
	if table < 0 || table == 253 || table == mainTable || table == 255 {
		errs = append(errs, fmt.Errorf("routing: config: table %d is reserved or invalid", cfg.Table))
	}
	if cfg.Protocol < 0 || cfg.Protocol > 255 {
		errs = append(errs, fmt.Errorf("routing: config: protocol %d out of range 0..255", cfg.Protocol))
	}
	mark := cfg.FwMark
	if mark == 0 {
		mark = DefaultFwMark
	}
	w := &wantState{
		iface:  cfg.Interface,
		mtu:    cfg.MTU,
		addrs:  make(map[netip.Prefix]bool),
		routes: make(map[route]bool),
		rules:  make(map[rule]bool),
	}
	for _, p := range cfg.Addrs {
		if err := checkPrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("routing: config: address %v: %w", p, err))
			continue
		}
		w.addrs[p] = true
	}
	for _, p := range cfg.Routes {
		if err := checkPrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("routing: config: route %v: %w", p, err))
			continue
		}
		p = p.Masked()
		if p.Bits() == 0 {
			w.routes[route{dst: p, table: table, proto: cfg.Protocol}] = true
			fam := family(p.Addr())
			w.rules[rule{family: fam, priority: m.prio, table: mainTable, suppressPrefixlen: 0}] = true
			w.rules[rule{family: fam, priority: m.prio + 1, table: table, suppressPrefixlen: -1, invert: true, mark: mark}] = true
			continue
		}
		if !cfg.Covered && coveredByAddr(p, cfg.Addrs) {
			continue
		}
		w.routes[route{dst: p, table: mainTable, proto: cfg.Protocol}] = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return w, nil
}

func checkPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return errors.New("invalid prefix")
	case p.Addr().Is4In6():
		return errors.New("IPv4-mapped IPv6 prefix")
	case p.Addr().Zone() != "":
		return errors.New("prefix with zone")
	}
	return nil
}

// coveredByAddr reports whether p lies inside the connected prefix of one of
// the link's addresses, so the kernel already routes it to the link.
func coveredByAddr(p netip.Prefix, addrs []netip.Prefix) bool {
	for _, a := range addrs {
		if a.IsValid() && a.Addr().BitLen() == p.Addr().BitLen() && a.Bits() <= p.Bits() && a.Masked().Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// Set makes the host state match cfg: it sets the link's MTU, brings it up,
// turns off its send_redirects (best effort), and installs cfg's addresses,
// routes and policy rules, removing whatever an earlier Set installed that
// cfg no longer asks for. Set may be called repeatedly with identical
// configs; only differences touch the kernel. A nil cfg removes everything
// the Manager added (the link's MTU and up state are left as they are).
//
// An invalid cfg or a missing link changes nothing. Otherwise a failing
// operation does not stop the others: Set returns all errors joined, and a
// later Set retries what failed, except removals from a link that cfg no
// longer names (those are reported once and forgotten).
func (m *Manager) Set(cfg *Config) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if cfg == nil {
		return m.removeAllLocked()
	}
	w, err := m.want(cfg)
	if err != nil {
		return err
	}
	l, err := m.nl.linkByName(w.iface)
	if err != nil {
		return fmt.Errorf("routing: link %q: %w", w.iface, err)
	}
	var errs []error
	if l.index != m.link.index {
		// A different link (renamed config, or the TUN was recreated):
		// whatever we put on the old one is either gone with it or must go.
		// What cannot be removed from it is reported and forgotten: the
		// maps below describe the managed link, and keeping it there would
		// keep it off the new link for good.
		errs = append(errs, m.dropLinkStateLocked()...)
		clear(m.addrs)
		clear(m.routes)
		m.link = l
	}

	if w.mtu != 0 && l.mtu != w.mtu {
		errs = m.do(errs, fmt.Sprintf("link set %s mtu %d", l.name, w.mtu), m.nl.linkSetMTU(l, w.mtu))
	}
	if !l.up {
		errs = m.do(errs, fmt.Sprintf("link set %s up", l.name), m.nl.linkSetUp(l))
	}
	if m.sysctlIndex != l.index {
		// Best effort: a hub hairpins spoke-to-spoke traffic through the
		// same TUN, which must not make the kernel send ICMP redirects.
		if err := m.nl.disableRedirects(l); err != nil {
			m.log.Warn("cannot disable send_redirects", "link", l.name, "err", err)
		}
		m.sysctlIndex = l.index
	}

	installed := m.installedLocked()
	// Remove before add: rules first so no traffic is steered into a table
	// that is being emptied, addresses before adding so an IPv6 address
	// whose prefix length changed is not replaced and then deleted.
	for _, r := range sortedRules(m.rules) {
		if !w.rules[r] {
			errs = m.delRuleLocked(errs, r)
		}
	}
	for _, r := range sortedRoutes(m.routes) {
		if !w.routes[r] {
			errs = m.delRouteLocked(errs, l, r)
		}
	}
	for _, p := range sortedPrefixes(m.addrs) {
		if !w.addrs[p] {
			errs = m.delAddrLocked(errs, l, p)
		}
	}
	removed := installed - m.installedLocked()
	// Add: addresses, then routes, then the rules that steer traffic into
	// the routes' table.
	added := addMissing(m, &errs, sortedPrefixes(w.addrs), m.addrs, func(p netip.Prefix) (string, error) {
		return "addr add " + addrString(l, p), m.nl.addrAdd(l, p)
	})
	added += addMissing(m, &errs, sortedRoutes(w.routes), m.routes, func(r route) (string, error) {
		return "route add " + routeString(l, r), m.nl.routeAdd(l, r)
	})
	added += addMissing(m, &errs, sortedRules(w.rules), m.rules, func(r rule) (string, error) {
		return "rule add " + r.String(), m.nl.ruleAdd(r)
	})
	if added > 0 || removed > 0 {
		m.log.Info("host state updated", "link", l.name, "addrs", len(m.addrs), "routes", len(m.routes), "rules", len(m.rules))
	}
	return errors.Join(errs...)
}

// addMissing adds, in order, each of want that installed lacks with add,
// which performs the operation and names it, and records it in installed
// once added. It appends the failures to errs and returns how many it
// added.
func addMissing[K comparable](m *Manager, errs *[]error, want []K, installed map[K]bool, add func(K) (op string, err error)) int {
	n := 0
	for _, k := range want {
		if installed[k] {
			continue
		}
		op, err := add(k)
		*errs = m.do(*errs, op, err)
		if err == nil {
			installed[k] = true
			n++
		}
	}
	return n
}

// do logs op and appends its error, if any, to errs.
func (m *Manager) do(errs []error, op string, err error) []error {
	if err != nil {
		return append(errs, fmt.Errorf("routing: %s: %w", op, err))
	}
	m.log.Debug(op)
	return errs
}

func (m *Manager) delRuleLocked(errs []error, r rule) []error {
	err := m.nl.ruleDel(r)
	if err == nil {
		delete(m.rules, r)
	}
	return m.do(errs, "rule del "+r.String(), err)
}

func (m *Manager) delRouteLocked(errs []error, l linkInfo, r route) []error {
	err := m.nl.routeDel(l, r)
	if err == nil {
		delete(m.routes, r)
	}
	return m.do(errs, "route del "+routeString(l, r), err)
}

func (m *Manager) delAddrLocked(errs []error, l linkInfo, p netip.Prefix) []error {
	err := m.nl.addrDel(l, p)
	if err == nil {
		delete(m.addrs, p)
	}
	return m.do(errs, "addr del "+addrString(l, p), err)
}

// dropLinkStateLocked removes the addresses and routes on m.link if that
// link still exists, and forgets them if it is gone (the kernel removed them
// with it).
func (m *Manager) dropLinkStateLocked() []error {
	if m.link.index == 0 || (len(m.addrs) == 0 && len(m.routes) == 0) {
		return nil
	}
	cur, err := m.nl.linkByName(m.link.name)
	if err != nil || cur.index != m.link.index {
		m.log.Debug("link gone, forgetting its addresses and routes", "link", m.link.name)
		clear(m.addrs)
		clear(m.routes)
		return nil
	}
	var errs []error
	for _, r := range sortedRoutes(m.routes) {
		errs = m.delRouteLocked(errs, cur, r)
	}
	for _, p := range sortedPrefixes(m.addrs) {
		errs = m.delAddrLocked(errs, cur, p)
	}
	return errs
}

// removeAllLocked removes every rule, route and address the Manager added.
func (m *Manager) removeAllLocked() error {
	installed := m.installedLocked()
	var errs []error
	for _, r := range sortedRules(m.rules) {
		errs = m.delRuleLocked(errs, r)
	}
	errs = append(errs, m.dropLinkStateLocked()...)
	if len(errs) == 0 && installed > 0 {
		m.log.Info("host state removed", "link", m.link.name)
	}
	return errors.Join(errs...)
}

// installedLocked returns how many addresses, routes and rules the Manager
// has installed.
func (m *Manager) installedLocked() int {
	return len(m.addrs) + len(m.routes) + len(m.rules)
}

// Close removes everything the Manager added (addresses, routes, rules) and
// releases its netlink handle. The link itself is not deleted: the TUN's
// owner closes it, before or after Close. Close returns all errors joined;
// later calls return nil, and Set returns [ErrClosed].
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	err := m.removeAllLocked()
	if cerr := m.nl.close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("routing: close netlink: %w", cerr))
	}
	return err
}

// linkInfo is what the Manager needs to know about a link.
type linkInfo struct {
	name  string
	index int  // ifindex; 0 means none
	mtu   int  // current MTU
	up    bool // administratively up
	tun   bool // a tun (not tap) device
}

// route is a route into the managed link.
type route struct {
	dst   netip.Prefix // masked
	table int
	proto int // routing protocol; 0: the kernel's default
}

// rule is an IP policy rule without selectors other than fwmark.
type rule struct {
	family            int // 4 or 6
	priority          int
	table             int
	suppressPrefixlen int // -1: none
	invert            bool
	mark              uint32 // 0: no fwmark selector
}

func tableString(t int) string {
	if t == mainTable {
		return "main"
	}
	return fmt.Sprint(t)
}

// String formats r like ip-rule(8) arguments.
func (r rule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "-%d pref %d", r.family, r.priority)
	if r.invert {
		b.WriteString(" not")
	}
	if r.mark != 0 {
		fmt.Fprintf(&b, " fwmark %#x", r.mark)
	}
	fmt.Fprintf(&b, " lookup %s", tableString(r.table))
	if r.suppressPrefixlen >= 0 {
		fmt.Fprintf(&b, " suppress_prefixlength %d", r.suppressPrefixlen)
	}
	return b.String()
}

// routeString formats r like ip-route(8) arguments; l's name is omitted when
// l is zero (a route deleted by destination and table only).
func routeString(l linkInfo, r route) string {
	s := fmt.Sprintf("%v dev %s table %s", r.dst, l.name, tableString(r.table))
	if l.name == "" {
		s = fmt.Sprintf("%v table %s", r.dst, tableString(r.table))
	}
	if r.proto != 0 {
		s += fmt.Sprintf(" proto %d", r.proto)
	}
	return s
}

func addrString(l linkInfo, p netip.Prefix) string {
	if p.Addr().Is6() {
		return fmt.Sprintf("%v dev %s nodad", p, l.name)
	}
	return fmt.Sprintf("%v dev %s", p, l.name)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func sortedPrefixes(s map[netip.Prefix]bool) []netip.Prefix {
	return slices.SortedFunc(maps.Keys(s), comparePrefix)
}

func sortedRoutes(s map[route]bool) []route {
	return slices.SortedFunc(maps.Keys(s), func(a, b route) int {
		if c := comparePrefix(a.dst, b.dst); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.table, b.table), cmp.Compare(a.proto, b.proto))
	})
}

func sortedRules(s map[rule]bool) []rule {
	return slices.SortedFunc(maps.Keys(s), func(a, b rule) int {
		return cmp.Or(
			cmp.Compare(a.family, b.family),
			cmp.Compare(a.priority, b.priority),
			cmp.Compare(a.table, b.table),
			cmp.Compare(a.mark, b.mark),
		)
	})
}
