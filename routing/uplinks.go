// SPDX-License-Identifier: MIT

package routing

import (
	"cmp"
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"time"
)

// UplinkDebounce is how long [WatchUplinks] collects the burst of events one
// change makes (link, addresses, routes) before reporting an uplink that
// appeared. A usable uplink that goes away is reported at once: every
// millisecond counts in a make-before-break switch.
const UplinkDebounce = 20 * time.Millisecond

// UplinkSelection says which links may be uplinks.
type UplinkSelection struct {
	// Names are the configured uplinks in order of preference. Nil with
	// Any.
	Names []string
	// Any makes every link an uplink candidate, ordered by the lowest
	// metric of its default routes, then by name; Exclude and "lo" never
	// are.
	Any bool
	// Exclude names links that are never uplinks with Any (the node's own
	// TUN device).
	Exclude []string
}

// UplinkView interprets the monitor's [Change] events as the list of
// usable uplinks, best first. An uplink is usable when its link is up, has
// a global unicast address and at least one default route in the main
// table. The zero value is not usable; make one with [NewUplinkView]. It is
// not safe for concurrent use.
type UplinkView struct {
	sel   UplinkSelection
	links map[int]*viewLink // by interface index
}

type viewLink struct {
	name   string
	up     bool
	addrs  map[netip.Prefix]bool
	routes map[viewRoute]bool
}

type viewRoute struct {
	dst    netip.Prefix
	gw     netip.Addr
	metric int
}

// NewUplinkView returns an empty view for sel.
func NewUplinkView(sel UplinkSelection) *UplinkView {
	sel.Names = slices.Clone(sel.Names)
	return &UplinkView{sel: sel, links: make(map[int]*viewLink)}
}

// Reset forgets every link, as before a new subscription lists them again.
func (v *UplinkView) Reset() { clear(v.links) }

// Apply records one change. It knows two kernel quirks: a link that goes
// down loses its IPv4 routes without an RTM_DELROUTE (the kernel
// re-announces those that come back), and so do routes via a gateway in a
// removed address's subnet.
func (v *UplinkView) Apply(c Change) {
	l := v.links[c.Index]
	if l == nil {
		l = &viewLink{addrs: make(map[netip.Prefix]bool), routes: make(map[viewRoute]bool)}
		v.links[c.Index] = l
	}
	if c.Link != "" {
		l.name = c.Link
	}
	switch c.Kind {
	case LinkUp:
		l.up = true
	case LinkDown:
		l.up = false
		clear(l.routes)
	case AddrAdded:
		l.addrs[c.Prefix] = true
	case AddrRemoved:
		delete(l.addrs, c.Prefix)
		for r := range l.routes {
			if r.gw.IsValid() && c.Prefix.Masked().Contains(r.gw) {
				delete(l.routes, r)
			}
		}
	case DefaultRouteAdded:
		l.routes[viewRoute{c.Prefix, c.Gateway, c.Metric}] = true
	case DefaultRouteRemoved:
		delete(l.routes, viewRoute{c.Prefix, c.Gateway, c.Metric})
	}
}

// Usable returns the usable uplinks, best first: in the order of
// sel.Names, or with Any by the lowest default-route metric, then by name.
// The result is never nil.
func (v *UplinkView) Usable() []string {
	type cand struct {
		name   string
		metric int
	}
	var cs []cand
	for _, l := range v.links {
		if !l.up || len(l.routes) == 0 || l.name == "" || !hasGlobal(l.addrs) || !v.candidate(l.name) {
			continue
		}
		metric := -1
		for r := range l.routes {
			if metric < 0 || r.metric < metric {
				metric = r.metric
			}
		}
		cs = append(cs, cand{l.name, metric})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if !v.sel.Any {
			return slices.Index(v.sel.Names, a.name) - slices.Index(v.sel.Names, b.name)
		}
		return cmp.Or(cmp.Compare(a.metric, b.metric), cmp.Compare(a.name, b.name))
	})
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.name
	}
	return out
}

func (v *UplinkView) candidate(name string) bool {
	if v.sel.Any {
		return name != "lo" && !slices.Contains(v.sel.Exclude, name)
	}
	return slices.Contains(v.sel.Names, name)
}

func hasGlobal(addrs map[netip.Prefix]bool) bool {
	for p := range addrs {
		if a := p.Addr(); a.IsGlobalUnicast() && !a.IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

// WatchUplinks follows the host's uplinks until ctx is done and calls
// update with the usable ones, best first (see [UplinkView]), after every
// burst of changes: at once when an uplink that update last saw stops
// being usable, else after [UplinkDebounce] of quiet (the list may be
// unchanged: a change of an unusable link, or an address renewed, is a
// cue to retry what failed). A failed subscription is retried
// with capped backoff. update runs on WatchUplinks's goroutine; while it
// runs, events wait in the monitor. WatchUplinks returns when ctx is done.
func WatchUplinks(ctx context.Context, opts Options, sel UplinkSelection, update func(usable []string)) {
	w := &uplinkWatch{log: logger(opts), view: NewUplinkView(sel), update: update, debounce: UplinkDebounce}
	retry := time.Second
	for ctx.Err() == nil {
		ch, err := Subscribe(ctx, opts)
		if err != nil {
			w.log.Error("uplink monitor", "err", err, "retry_in", retry)
			if !sleepCtx(ctx, retry) {
				return
			}
			retry = min(2*retry, 30*time.Second)
			continue
		}
		retry = time.Second
		// The subscription lists the current state again, one event at a
		// time: nothing is urgent until the view is whole again.
		w.view.Reset()
		w.last = nil
		w.watch(ctx, ch)
		if !sleepCtx(ctx, time.Second) { // the subscription failed: not in a tight loop
			return
		}
	}
}

// uplinkWatch is the state of WatchUplinks.
type uplinkWatch struct {
	log      *slog.Logger
	view     *UplinkView
	last     []string // what update saw last; nil before the first call
	update   func(usable []string)
	debounce time.Duration
}

// watch applies the changes of one subscription until it ends.
func (w *uplinkWatch) watch(ctx context.Context, ch <-chan Change) {
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				return
			}
			w.log.Debug("uplink monitor", "change", c.String())
			w.view.Apply(c)
			if lostAny(w.last, w.view.Usable()) {
				debounce.Stop()
				w.report()
				continue
			}
			debounce.Reset(w.debounce)
		case <-debounce.C:
			w.report()
		case <-ctx.Done():
			for range ch { // let the monitor's goroutine finish
			}
			return
		}
	}
}

// report calls update with the usable uplinks.
func (w *uplinkWatch) report() {
	w.last = w.view.Usable()
	w.update(w.last)
}

// lostAny reports whether an uplink in before is missing from now.
func lostAny(before, now []string) bool {
	for _, n := range before {
		if !slices.Contains(now, n) {
			return true
		}
	}
	return false
}

// sleepCtx waits d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
