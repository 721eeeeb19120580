// SPDX-License-Identifier: MIT

package routing

import (
	"errors"
	"fmt"
)

// CleanUp removes the leftovers of a crashed run, without any state: the
// policy rules at priorities rulePriority and rulePriority+1 that look up
// table, carry the "not fwmark" selector for fwmark, or are the
// "lookup main suppress_prefixlength 0" rule; every route in table; and a
// link named iface, but only if it is a tun device. Zero arguments mean the
// defaults ([DefaultTable], [DefaultFwMark], [DefaultRulePriority]); an empty
// iface skips the link. It is safe at start-up, when nothing is left over,
// and after a clean stop. It works in the calling thread's network namespace,
// blocks while netlink operations run, and returns all errors joined.
func CleanUp(iface string, table int, fwmark uint32, rulePriority int) error {
	nl, err := newNetlink()
	if err != nil {
		return err
	}
	defer nl.close()
	return cleanUp(nl, iface, table, fwmark, rulePriority)
}

func cleanUp(nl netlinker, iface string, table int, fwmark uint32, prio int) error {
	if table == 0 {
		table = DefaultTable
	}
	if fwmark == 0 {
		fwmark = DefaultFwMark
	}
	if prio == 0 {
		prio = DefaultRulePriority
	}
	if err := checkPriority(prio); err != nil {
		return err
	}
	if table < 0 || table == 253 || table == mainTable || table == 255 {
		return fmt.Errorf("routing: cleanup: table %d is reserved or invalid", table)
	}
	var errs []error
	rules, err := nl.ruleList()
	if err != nil {
		errs = append(errs, fmt.Errorf("routing: cleanup: list rules: %w", err))
	}
	for _, r := range rules {
		if r.priority != prio && r.priority != prio+1 {
			continue
		}
		ours := r.table == table ||
			(r.invert && r.mark == fwmark) ||
			(r.table == mainTable && r.suppressPrefixlen == 0)
		if !ours {
			continue
		}
		if err := nl.ruleDel(r); err != nil {
			errs = append(errs, fmt.Errorf("routing: cleanup: rule del %v: %w", r, err))
		}
	}
	routes, err := nl.routeList(table)
	if err != nil {
		errs = append(errs, fmt.Errorf("routing: cleanup: list routes in table %d: %w", table, err))
	}
	for _, r := range routes {
		if err := nl.routeDel(linkInfo{}, r); err != nil {
			errs = append(errs, fmt.Errorf("routing: cleanup: route del %s: %w", routeString(linkInfo{}, r), err))
		}
	}
	if iface != "" {
		l, err := nl.linkByName(iface)
		switch {
		case errors.Is(err, errLinkNotFound):
		case err != nil:
			errs = append(errs, fmt.Errorf("routing: cleanup: link %q: %w", iface, err))
		case l.tun:
			if err := nl.linkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("routing: cleanup: link del %s: %w", iface, err))
			}
		}
	}
	return errors.Join(errs...)
}
