// SPDX-License-Identifier: MIT

package routing

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// fakeNL is a recording netlinker: it keeps a small model of the kernel
// state (links, addresses, routes, rules), logs every mutating operation in
// ip(8)-like words, and fails the operations named in fail.
type fakeNL struct {
	mu     sync.Mutex
	links  map[string]*linkInfo
	addrs  map[string]bool // "10.77.0.1/24 dev gw0"
	routes map[route]int   // route -> ifindex
	rules  []rule
	fail   map[string]error // op string -> error it returns
	ops    []string
	closed bool
}

var _ netlinker = (*fakeNL)(nil)

func newFake(links ...linkInfo) *fakeNL {
	f := &fakeNL{
		links:  make(map[string]*linkInfo),
		addrs:  make(map[string]bool),
		routes: make(map[route]int),
		fail:   make(map[string]error),
	}
	for _, l := range links {
		f.links[l.name] = &l
	}
	return f
}

// takeOps returns and clears the operation log.
func (f *fakeNL) takeOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ops := f.ops
	f.ops = nil
	return ops
}

// op records s and returns the injected error for it, if any.
func (f *fakeNL) op(s string) error {
	f.ops = append(f.ops, s)
	return f.fail[s]
}

func (f *fakeNL) lock() func() {
	f.mu.Lock()
	if f.closed {
		panic("routing: fake netlink used after close")
	}
	return f.mu.Unlock
}

func (f *fakeNL) linkByName(name string) (linkInfo, error) {
	defer f.lock()()
	l, ok := f.links[name]
	if !ok {
		return linkInfo{}, fmt.Errorf("%w: %s", errLinkNotFound, name)
	}
	return *l, nil
}

func (f *fakeNL) linkSetMTU(l linkInfo, mtu int) error {
	defer f.lock()()
	if err := f.op(fmt.Sprintf("link set %s mtu %d", l.name, mtu)); err != nil {
		return err
	}
	f.links[l.name].mtu = mtu
	return nil
}

func (f *fakeNL) linkSetUp(l linkInfo) error {
	defer f.lock()()
	if err := f.op(fmt.Sprintf("link set %s up", l.name)); err != nil {
		return err
	}
	f.links[l.name].up = true
	return nil
}

func (f *fakeNL) linkDel(l linkInfo) error {
	defer f.lock()()
	if err := f.op("link del " + l.name); err != nil {
		return err
	}
	delete(f.links, l.name)
	return nil
}

func (f *fakeNL) disableRedirects(l linkInfo) error {
	defer f.lock()()
	return f.op(fmt.Sprintf("sysctl net.ipv4.conf.%s.send_redirects=0", l.name))
}

func (f *fakeNL) addrAdd(l linkInfo, p netip.Prefix) error {
	defer f.lock()()
	s := addrString(l, p)
	if err := f.op("addr add " + s); err != nil {
		return err
	}
	f.addrs[s] = true
	return nil
}

func (f *fakeNL) addrDel(l linkInfo, p netip.Prefix) error {
	defer f.lock()()
	s := addrString(l, p)
	if err := f.op("addr del " + s); err != nil {
		return err
	}
	delete(f.addrs, s)
	return nil
}

func (f *fakeNL) routeAdd(l linkInfo, r route) error {
	defer f.lock()()
	if err := f.op("route add " + routeString(l, r)); err != nil {
		return err
	}
	f.routes[r] = l.index
	return nil
}

func (f *fakeNL) routeDel(l linkInfo, r route) error {
	defer f.lock()()
	if err := f.op("route del " + routeString(l, r)); err != nil {
		return err
	}
	delete(f.routes, r)
	return nil
}

func (f *fakeNL) routeList(table int) ([]route, error) {
	defer f.lock()()
	var out []route
	for r := range f.routes {
		if r.table == table {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b route) int { return comparePrefix(a.dst, b.dst) })
	return out, nil
}

func (f *fakeNL) ruleAdd(r rule) error {
	defer f.lock()()
	if err := f.op("rule add " + r.String()); err != nil {
		return err
	}
	if !slices.Contains(f.rules, r) {
		f.rules = append(f.rules, r)
	}
	return nil
}

func (f *fakeNL) ruleDel(r rule) error {
	defer f.lock()()
	if err := f.op("rule del " + r.String()); err != nil {
		return err
	}
	f.rules = slices.DeleteFunc(f.rules, func(x rule) bool { return x == r })
	return nil
}

func (f *fakeNL) ruleList() ([]rule, error) {
	defer f.lock()()
	return slices.Clone(f.rules), nil
}

func (f *fakeNL) close() error {
	defer f.lock()()
	f.closed = true
	return nil
}

// empty reports whether the fake holds no addresses, routes or rules.
func (f *fakeNL) empty() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.addrs) == 0 && len(f.routes) == 0 && len(f.rules) == 0
}
