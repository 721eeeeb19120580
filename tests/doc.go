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
//	 lan-h (eth0 198.19.10.2, 2001:db8:f10::2)
//	   │ veth
//	 lan0 198.19.10.1, 2001:db8:f10::1
//	┌───────────────────────────────────┐
//	│ hub    gw0 198.19.0.1/24 2001:db8:77::1/64│  listens on 0.0.0.0:4433 (or [::]:4433)
//	│ up1 198.18.1.1 2001:db8:1::1      │
//	│ up2 198.18.2.1 2001:db8:2::1      │
//	└──┬─────────────────────────┬──────┘
//	   │ veth                    │ veth
//	┌──┴───────────────────┐  ┌──┴───────────────────┐
//	│ s1  up0 198.18.1.2   │  │ s2  up0 198.18.2.2   │
//	│     2001:db8:1::2    │  │     2001:db8:2::2    │
//	│ gw0 198.19.0.2 2001:db8:77::2│  │ gw0 198.19.0.3 2001:db8:77::3│
//	│ lan0 198.19.20.1    │  │ lan0 198.19.30.1    │
//	│      2001:db8:f20::1         │  │      2001:db8:f30::1         │
//	└──┬───────────────────┘  └──┬───────────────────┘
//	   │ veth                    │ veth
//	 lan-1 eth0 198.19.20.2   lan-2 eth0 198.19.30.2
//	       2001:db8:f20::2                   2001:db8:f30::2
//
// Site i dials the hub at 198.18.i.1:4433 or [2001:db8:i::1]:4433.
package tests
