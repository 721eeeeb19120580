// SPDX-License-Identifier: MIT

// Package netlab builds throw-away network labs out of Linux network
// namespaces for Godwit's system tests, its benchmark program and
// `godwit demo`. It does not depend on package testing.
//
// A [Lab] owns everything it creates: namespaces named
// "<prefix>-<name>-<ID>" (ID is a random per-run suffix, so parallel runs
// and crash leftovers never collide), veth pairs between them, background
// processes, and a temporary directory for configs, keys and logs.
// [Lab.Close] tears all of it down and is safe to call at any point,
// more than once, and from a signal handler goroutine.
//
// A typical lab, as the system tests build it (interface names are short
// because Linux limits them to 15 bytes):
//
//	  lan-a ns               site-a ns                       hub ns
//	┌──────────────┐    ┌─────────────────────┐        ┌─────────────────────┐
//	│ lan0         │    │ lan0   gw0 (TUN)    │        │ gw0 (TUN)           │
//	│ 198.19.20.2 ├────┤ 198.19.20.1        │        │ 198.19.0.1           │
//	└──────────────┘veth│        198.19.0.2    │  veth  │                     │
//	                    │ up0 198.18.1.2      ├────────┤ up1 198.18.1.1      │
//	                    └─────────────────────┘        └─────────────────────┘
//
// Everything runs through the `ip` command (iproute2), which must be
// installed, and needs root. Sockets for test traffic are made inside a
// namespace with [NS.Do], so a test can drive TCP, UDP and ICMP from Go
// without iputils or other tools. [NS.Ping] and [NS.WaitPing] send a
// counted series of pings; [NS.StartPinger] pings without pause and
// measures outages.
//
// [NS.StartDaemon] runs `godwit run` with its control socket in the lab's
// directory; [Godwit] finds or builds the binary, and [WaitFor] is the
// polling loop everything that waits for a daemon uses. Tests use these
// through package labtest, which fails the test instead of returning
// errors.
package netlab
