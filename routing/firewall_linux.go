// SPDX-License-Identifier: MIT

package routing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// SetFirewall makes iface's table what cfg asks for, in one nftables
// transaction: a table that existed is replaced, never left half-built.
// It works in the calling thread's network namespace.
func SetFirewall(cfg *FirewallConfig) error {
	if err := checkFirewall(cfg); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("routing: firewall: %w", err)
	}
	mark := cfg.FwMark
	if mark == 0 {
		mark = DefaultFwMark
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: firewallTable(cfg.Interface)}
	// Add, delete, add: the delete cannot fail for a missing table, and
	// the whole batch is one transaction.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw})
	tun := ifname(cfg.Interface)
	for _, a := range cfg.Addrs {
		a4 := a.Addr().Is4()
		// Packets for the tunnel's address, and from its subnet, belong on the TUN.
		for _, m := range []struct {
			offset uint32
			pfx    netip.Prefix
		}{
			{daddrOffset(a4), netip.PrefixFrom(a.Addr(), a.Addr().BitLen())},
			{saddrOffset(a4), a.Masked()},
		} {
			exprs := []expr.Any{
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: tun},
			}
			exprs = append(exprs, matchFamily(a4)...)
			exprs = append(exprs, matchPrefix(m.offset, m.pfx)...)
			exprs = append(exprs,
				// not from this host itself (the kernel loops those through lo)
				&expr.Fib{Register: 1, FlagSADDR: true, ResultADDRTYPE: true},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
				&expr.Counter{},
				&expr.Verdict{Kind: expr.VerdictDrop},
			)
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: exprs})
		}
	}
	if cfg.KillSwitch {
		killSwitch(c, t, tun, mark)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("routing: firewall: table inet %s: %w", t.Name, err)
	}
	return nil
}

// killSwitch adds the output and forward chains that keep traffic from
// leaving outside the tunnel.
func killSwitch(c *nftables.Conn, t *nftables.Table, tun []byte, mark uint32) {
	accept := func(ch *nftables.Chain, exprs ...expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(exprs, &expr.Verdict{Kind: expr.VerdictAccept})})
	}
	drop := func(ch *nftables.Chain) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}})
	}
	out := c.AddChain(&nftables.Chain{Name: "killswitch_out", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter})
	accept(out, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: tun})
	accept(out, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")})
	accept(out, &expr.Meta{Key: expr.MetaKeyMARK, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(mark)})
	// IPv6 link-local and multicast (neighbour discovery, router
	// solicitations): the uplink must keep working for the marked QUIC
	// traffic.
	for _, p := range []netip.Prefix{netip.MustParsePrefix("fe80::/10"), netip.MustParsePrefix("ff00::/8")} {
		accept(out, append(matchFamily(false), matchPrefix(daddrOffset(false), p)...)...)
	}
	// DHCP, so that the uplink keeps its address.
	for _, port := range []struct {
		v4   bool
		port uint16
	}{{true, 67}, {false, 547}} {
		exprs := matchFamily(port.v4)
		exprs = append(exprs,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port.port)},
		)
		accept(out, exprs...)
	}
	drop(out)
	fwd := c.AddChain(&nftables.Chain{Name: "killswitch_forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	accept(fwd, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: tun})
	accept(fwd, &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: tun})
	drop(fwd)
}

// RemoveFirewall removes iface's table, if there is one.
func RemoveFirewall(iface string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("routing: firewall: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: firewallTable(iface)}
	c.AddTable(t) // so that the delete cannot fail for a missing table
	c.DelTable(t)
	if err := c.Flush(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("routing: firewall: remove table inet %s: %w", t.Name, err)
	}
	return nil
}

// matchFamily matches IPv4 (v4) or IPv6 packets in an inet chain.
func matchFamily(v4 bool) []expr.Any {
	proto := byte(unix.NFPROTO_IPV6)
	if v4 {
		proto = unix.NFPROTO_IPV4
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// matchPrefix matches the address at offset in the network header
// against p.
func matchPrefix(offset uint32, p netip.Prefix) []expr.Any {
	a := p.Masked().Addr().AsSlice()
	n := uint32(len(a))
	mask := make([]byte, n)
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a},
	}
}

func saddrOffset(v4 bool) uint32 {
	if v4 {
		return 12
	}
	return 8
}

func daddrOffset(v4 bool) uint32 {
	if v4 {
		return 16
	}
	return 24
}

// ifname is an interface name as nftables compares it: NUL-padded to
// IFNAMSIZ.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}
