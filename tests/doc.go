// SPDX-License-Identifier: MIT

// Package tests holds Godwit's system tests: they build network namespaces
// with package netlab, start the real godwit binary with generated keys and
// configs, and push real traffic through it. The root gate, the daemon
// starter, the status reader and the polling helpers are package labtest's
// (routing/netlab/labtest), shared with the benchmarks. They need root and
// skip without it, unless GODWIT_E2E=1 is set, in which case they fail.
//
// The shared topology (hub plus one or two sites, each optionally with a
// LAN namespace behind it); site i hangs off the hub's up<i> with its own
// veth, so the hub forwards spoke-to-spoke traffic:
//
//	 lan-h (eth0 192.168.10.2, fd10::2)
//	   │ veth
//	 lan0 192.168.10.1, fd10::1
//	┌───────────────────────────────────┐
//	│ hub    gw0 10.77.0.1/24 fd77::1/64│  listens on 0.0.0.0:4433 (or [::]:4433)
//	│ up1 198.18.1.1 2001:db8:1::1      │
//	│ up2 198.18.2.1 2001:db8:2::1      │
//	└──┬─────────────────────────┬──────┘
//	   │ veth                    │ veth
//	┌──┴───────────────────┐  ┌──┴───────────────────┐
//	│ s1  up0 198.18.1.2   │  │ s2  up0 198.18.2.2   │
//	│     2001:db8:1::2    │  │     2001:db8:2::2    │
//	│ gw0 10.77.0.2 fd77::2│  │ gw0 10.77.0.3 fd77::3│
//	│ lan0 192.168.20.1    │  │ lan0 192.168.30.1    │
//	│      fd20::1         │  │      fd30::1         │
//	└──┬───────────────────┘  └──┬───────────────────┘
//	   │ veth                    │ veth
//	 lan-1 eth0 192.168.20.2   lan-2 eth0 192.168.30.2
//	       fd20::2                   fd30::2
//
// Site i dials the hub at 198.18.i.1:4433 or [2001:db8:i::1]:4433.
package tests
