// SPDX-License-Identifier: MIT

//go:build !linux

package routing

import "errors"

// SetFirewall is not supported outside Linux.
func SetFirewall(cfg *FirewallConfig) error {
	if err := checkFirewall(cfg); err != nil {
		return err
	}
	return errors.New("routing: firewall: nftables needs Linux")
}

// RemoveFirewall is not supported outside Linux.
func RemoveFirewall(iface string) error { return nil }
