// SPDX-License-Identifier: MIT

package routing

import (
	"errors"
	"net/netip"
)

// netlinker is the part of the kernel's routing interface that the Manager
// and CleanUp use, in net/netip terms. The real implementation (netlink_linux.go)
// converts to netlink types at the call; tests use a recording fake.
//
// Deleting something that is already gone and adding a rule that already
// exists succeed, so callers can converge on a state without reading it
// first. Methods are called with the Manager's lock held, one at a time.
type netlinker interface {
	// linkByName returns the link called name, or an error (wrapping
	// errLinkNotFound when there is no such link).
	linkByName(name string) (linkInfo, error)
	linkSetMTU(l linkInfo, mtu int) error
	linkSetUp(l linkInfo) error
	// linkDel deletes the link.
	linkDel(l linkInfo) error
	// disableRedirects sets net.ipv4.conf.<l>.send_redirects to 0.
	disableRedirects(l linkInfo) error
	// addrAdd adds or replaces the address p on l, with nodad for IPv6.
	addrAdd(l linkInfo, p netip.Prefix) error
	addrDel(l linkInfo, p netip.Prefix) error
	// routeAdd adds r through l, scope link. A route to the same
	// destination in the same table through l already counts as added; one
	// through another link is an error (Godwit never takes over a route it
	// did not add, such as a LAN's connected route).
	routeAdd(l linkInfo, r route) error
	// routeDel deletes r through l; when l is zero, the first route with
	// r's destination in r's table, whatever its device.
	routeDel(l linkInfo, r route) error
	// routeList returns the routes of both families in table.
	routeList(table int) ([]route, error)
	ruleAdd(r rule) error
	ruleDel(r rule) error
	// ruleList returns the policy rules of both families.
	ruleList() ([]rule, error)
	// close releases the handle; no method may be called afterwards.
	close() error
}

// errLinkNotFound is wrapped by netlinker.linkByName when there is no link
// with that name.
var errLinkNotFound = errors.New("link not found")
