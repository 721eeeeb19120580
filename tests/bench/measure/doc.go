// SPDX-License-Identifier: MIT

// Package measure holds what the two benchmark programs, tests/bench and
// tests/bench/hubscale, share: CPU time and resident memory of a process
// read from /proc, the machine's load average, a context-aware sleep, the
// nearest-rank percentile index, the report as JSON with the table on
// stderr or as the table alone, the main function with its flag error
// handling, timestamp-less logger and signal context, and helpers for the
// namespaces and processes of a [netlab.Lab]. Their tests share table
// runners and a whole run that decodes the JSON report from package
// measuretest, and their end-to-end tests take the root gate and the lab
// from package labtest.
//
// Everything here is Linux-only (it reads /proc) and safe for concurrent
// use; nothing keeps state between calls.
package measure
