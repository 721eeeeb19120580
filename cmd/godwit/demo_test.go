// SPDX-License-Identifier: MIT

package main

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/godwit-vpn/godwit/config"
)

// TestDemoConfigs checks that the configs the demo writes load and give
// the site its two uplinks in order and the hub its loopback address.
func TestDemoConfigs(t *testing.T) {
	dir := t.TempDir()
	hubPath, sitePath, err := demoConfigs(dir)
	if err != nil {
		t.Fatal(err)
	}
	hub, err := config.Load(hubPath)
	if err != nil {
		t.Fatalf("hub config: %v", err)
	}
	site, err := config.Load(sitePath)
	if err != nil {
		t.Fatalf("site config: %v", err)
	}
	if got, want := site.Interface.Uplinks, []string{demoWifi.siteIf, demoCell.siteIf}; !slices.Equal(got, want) {
		t.Errorf("site uplinks = %q, want %q", got, want)
	}
	if len(hub.Interface.Uplinks) != 0 {
		t.Errorf("hub uplinks = %q, want none", hub.Interface.Uplinks)
	}
	if got, want := len(site.Peers), 1; got != want {
		t.Fatalf("site peers = %d, want %d", got, want)
	}
	if got, want := site.Peers[0].Endpoint, "198.18.0.1:4433"; got != want {
		t.Errorf("site endpoint = %q, want %q", got, want)
	}
	if got, want := site.Interface.StateDir, dir+"/site-state"; got != want {
		t.Errorf("site state_dir = %q, want %q", got, want)
	}
	for _, u := range []demoUplink{demoWifi, demoCell} {
		sp, hp := netip.MustParsePrefix(u.site), netip.MustParsePrefix(u.hub)
		if gw := netip.MustParseAddr(u.gw); !sp.Contains(gw) || hp.Addr() != gw || sp.Masked() != hp.Masked() {
			t.Errorf("uplink %s: site %v, hub %v, gateway %v: want one subnet, the hub as gateway", u.siteIf, sp, hp, gw)
		}
	}
}
