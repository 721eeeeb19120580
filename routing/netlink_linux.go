// SPDX-License-Identifier: MIT

package routing

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernel is the netlinker backed by a real netlink handle.
type kernel struct {
	h *netlink.Handle
}

var _ netlinker = (*kernel)(nil)

// newNetlink opens a netlink route socket in the calling thread's network
// namespace.
func newNetlink() (netlinker, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("routing: netlink handle: %w", err)
	}
	return &kernel{h: h}, nil
}

func (k *kernel) close() error {
	k.h.Close()
	return nil
}

func (k *kernel) linkByName(name string) (linkInfo, error) {
	l, err := k.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return linkInfo{}, fmt.Errorf("%w: %s", errLinkNotFound, name)
		}
		return linkInfo{}, err
	}
	a := l.Attrs()
	info := linkInfo{name: a.Name, index: a.Index, mtu: a.MTU, up: a.Flags&net.FlagUp != 0}
	if t, ok := l.(*netlink.Tuntap); ok && t.Mode != netlink.TUNTAP_MODE_TAP {
		info.tun = true
	}
	return info, nil
}

// nlLink is the minimal netlink.Link the handle's Link* methods need: they
// only read the index (and name as a fallback).
func nlLink(l linkInfo) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: l.name, Index: l.index}}
}

func (k *kernel) linkSetMTU(l linkInfo, mtu int) error { return k.h.LinkSetMTU(nlLink(l), mtu) }
func (k *kernel) linkSetUp(l linkInfo) error           { return k.h.LinkSetUp(nlLink(l)) }

func (k *kernel) linkDel(l linkInfo) error {
	return ignore(k.h.LinkDel(nlLink(l)), unix.ENODEV)
}

func (k *kernel) disableRedirects(l linkInfo) error {
	// Path form, not the dotted sysctl form, so a link name with a dot
	// needs no escaping. /proc/sys/net belongs to the network namespace of
	// the thread that opens it.
	p := filepath.Join("/proc/sys/net/ipv4/conf", l.name, "send_redirects")
	return os.WriteFile(p, []byte("0"), 0)
}

// nlIPNet converts a prefix to a net.IPNet, keeping p's host bits.
func nlIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// nlAddrOfPrefix converts a link address to netlink's type.
func nlAddrOfPrefix(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: nlIPNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func (k *kernel) addrAdd(l linkInfo, p netip.Prefix) error {
	return k.h.AddrReplace(nlLink(l), nlAddrOfPrefix(p))
}

func (k *kernel) addrDel(l linkInfo, p netip.Prefix) error {
	return ignore(k.h.AddrDel(nlLink(l), nlAddrOfPrefix(p)), unix.EADDRNOTAVAIL, unix.ENODEV)
}

func nlRoute(l linkInfo, r route) *netlink.Route {
	return &netlink.Route{
		LinkIndex: l.index,
		Dst:       nlIPNet(r.dst),
		Table:     r.table,
		Scope:     netlink.SCOPE_LINK,
		Protocol:  netlink.RouteProtocol(r.proto),
	}
}

func (k *kernel) routeAdd(l linkInfo, r route) error {
	err := k.h.RouteAdd(nlRoute(l, r))
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	filter := &netlink.Route{Dst: nlIPNet(r.dst), Table: r.table}
	rs, lerr := k.h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if lerr != nil {
		return fmt.Errorf("%w (and listing the existing route: %v)", err, lerr)
	}
	for _, x := range rs {
		if x.LinkIndex == l.index {
			return nil // ours already, e.g. added again after a failed removal
		}
	}
	via := "another route"
	if len(rs) > 0 {
		if ln, err := k.h.LinkByIndex(rs[0].LinkIndex); err == nil {
			via = "a route via " + ln.Attrs().Name
		}
	}
	return fmt.Errorf("%v is already reached through %s; Godwit does not replace routes it did not add (remove that route or the overlapping allowed_ips)", r.dst, via)
}

func (k *kernel) routeDel(l linkInfo, r route) error {
	nr := nlRoute(l, r)
	// As ip-route(8) does for deletes: match a route of any scope (IPv4
	// compares the scope otherwise; a leftover listed by CleanUp may have
	// any).
	nr.Scope = netlink.SCOPE_NOWHERE
	return ignore(k.h.RouteDel(nr), unix.ESRCH, unix.ENOENT)
}

func (k *kernel) routeList(table int) ([]route, error) {
	rs, err := k.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	var out []route
	for _, r := range rs {
		var dst netip.Prefix
		switch {
		case r.Dst != nil:
			a, ok := netip.AddrFromSlice(r.Dst.IP)
			if !ok {
				continue
			}
			bits, _ := r.Dst.Mask.Size()
			dst = netip.PrefixFrom(a.Unmap(), bits)
		case r.Family == netlink.FAMILY_V4:
			dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		case r.Family == netlink.FAMILY_V6:
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		default:
			continue
		}
		out = append(out, route{dst: dst, table: r.Table})
	}
	return out, nil
}

func nlRule(r rule) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = unix.AF_INET
	if r.family == 6 {
		nr.Family = unix.AF_INET6
	}
	nr.Priority = r.priority
	nr.Table = r.table
	nr.SuppressPrefixlen = r.suppressPrefixlen
	nr.Invert = r.invert
	nr.Mark = r.mark
	return nr
}

func (k *kernel) ruleAdd(r rule) error { return ignore(k.h.RuleAdd(nlRule(r)), unix.EEXIST) }

func (k *kernel) ruleDel(r rule) error {
	return ignore(k.h.RuleDel(nlRule(r)), unix.ENOENT, unix.ESRCH)
}

func (k *kernel) ruleList() ([]rule, error) {
	var out []rule
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := k.h.RuleList(fam)
		if err != nil {
			return out, err
		}
		for _, r := range rs {
			f := 4
			if r.Family == netlink.FAMILY_V6 {
				f = 6
			}
			out = append(out, rule{
				family:            f,
				priority:          r.Priority,
				table:             r.Table,
				suppressPrefixlen: r.SuppressPrefixlen,
				invert:            r.Invert,
				mark:              r.Mark,
			})
		}
	}
	return out, nil
}

// ignore returns nil if err is one of the errnos (the state is already what
// the caller wants), else err.
func ignore(err error, errnos ...unix.Errno) error {
	for _, e := range errnos {
		if errors.Is(err, e) {
			return nil
		}
	}
	return err
}
