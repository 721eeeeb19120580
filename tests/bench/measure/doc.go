// SPDX-License-Identifier: MIT

// Package measure holds what the two benchmark programs, tests/bench and
// tests/bench/hubscale, share: CPU time and resident memory of a process
// read from /proc, the machine's load average, a context-aware sleep, the
// nearest-rank percentile index, JSON output, the main function with its
// flag error handling, timestamp-less logger and signal context, helpers
// for the processes of a [netlab.Lab], and the root gate of their
// end-to-end tests.
//
// Everything here is Linux-only (it reads /proc) and safe for concurrent
// use; nothing keeps state between calls.
package measure
