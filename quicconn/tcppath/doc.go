// SPDX-License-Identifier: MIT

// Package tcppath carries Godwit's QUIC packets over TLS 1.3 on TCP, for
// networks that block UDP.
package tcppath
