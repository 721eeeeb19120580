// SPDX-License-Identifier: MIT

// Package tun is Godwit's packet device: the Linux TUN interface through
// golang.zx2c4.com/wireguard/tun (imported as wgtun), with its batched,
// offload-aware Read and Write. Package tuntest has an in-memory twin.
package tun

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Device is the subset of [wgtun.Device] that Godwit uses, so any wgtun
// device satisfies it and fakes stay small.
//
// Read and Write follow wgtun's batch contract: bufs and sizes have at least
// BatchSize elements, every packet starts at offset within its buffer, and
// offset must be at least 10 bytes (wgtun writes a virtio-net header in front
// of each packet when offloads are on). Each buffer must have enough capacity
// for a full 64 KiB packet: with offloads, Read splits a coalesced segment
// across buffers and Write coalesces packets into the first buffer's spare
// capacity. Neither retains bufs after returning.
//
// Read blocks until at least one packet is available and returns how many
// packets it stored, with their lengths in sizes. It returns os.ErrClosed
// (possibly wrapped) after Close, and [wgtun.ErrTooManySegments] when a
// coalesced read needed more buffers than given, in which case the packets
// it did store are valid.
//
// Write writes every packet in bufs and returns how many were written.
// BatchSize is constant for the device's lifetime. Close unblocks Read.
// Read and Write may be called concurrently with each other, but each by one
// goroutine at a time.
type Device interface {
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)
	Write(bufs [][]byte, offset int) (int, error)
	BatchSize() int
	MTU() (int, error)
	Name() (string, error)
	Close() error
}

var _ Device = wgtun.Device(nil)

// Create creates the TUN device name with the given MTU, with offloads (vnet
// headers, TSO/USO) enabled where the kernel supports them. The link is left
// down; package routing brings it up with its addresses.
func Create(name string, mtu int) (Device, error) {
	dev, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("tun: create %q: %w (run as root, or with CAP_NET_ADMIN as the systemd unit does)", name, err)
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("tun: create %q: %w (no /dev/net/tun: load the tun module with modprobe tun, or give the container the device)", name, err)
		}
		return nil, fmt.Errorf("tun: create %q: %w", name, err)
	}
	// wgtun reports link events on a small buffered channel and its netlink
	// listener blocks when nobody reads it; drain it for the device's
	// lifetime (it is closed by Close).
	go func() {
		for range dev.Events() {
		}
	}()
	return dev, nil
}
