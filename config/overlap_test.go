// SPDX-License-Identifier: MIT

package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// bruteOverlaps is findOverlaps the obvious way, O(n^2): the reference.
func bruteOverlaps(os []owned, prio func(i int) int) []int {
	first := make([]int, len(os))
	for j, b := range os {
		first[j] = -1
		for i, a := range os[:j] {
			if a.peer == b.peer || !a.pfx.Overlaps(b.pfx) {
				continue
			}
			if pa, pb := prio(i), prio(j); pa >= 0 && pb >= 0 && pa != pb {
				continue
			}
			first[j] = i
			break
		}
	}
	return first
}

// TestFindOverlaps compares the sweep with the pairwise reference on
// random sets of nested and disjoint prefixes, with and without
// priorities.
func TestFindOverlaps(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		n := 1 + r.IntN(60)
		peers := 1 + r.IntN(8)
		prios := make([]int, peers)
		for i := range prios {
			prios[i] = -1
			if r.IntN(2) == 0 {
				prios[i] = r.IntN(3)
			}
		}
		os := make([]owned, n)
		for i := range os {
			var pfx netip.Prefix
			if r.IntN(4) == 0 {
				a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(r.IntN(4))})
				pfx = netip.PrefixFrom(a, 120+r.IntN(9)).Masked()
			} else {
				a := netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(2)), byte(r.IntN(8))})
				pfx = netip.PrefixFrom(a, 22+r.IntN(11)).Masked()
			}
			os[i] = owned{pfx: pfx, peer: r.IntN(peers)}
		}
		prio := func(i int) int { return prios[os[i].peer] }
		got, want := findOverlaps(os, prio), bruteOverlaps(os, prio)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("round %d: findOverlaps(%v)[%d] = %d, want %d (prios %v)", round, os, i, got[i], want[i], prios)
			}
		}
	}
}

// bigConfig returns a hub's config with n peers that all claim
// 198.18.0.0/15 besides their own /32: every pair overlaps.
func bigConfig(n int) string {
	var b strings.Builder
	b.WriteString(head)
	for i := range n {
		pub := ed25519.NewKeyFromSeed(fmt.Appendf(make([]byte, 0, 32), "%032d", i)).Public().(ed25519.PublicKey)
		fmt.Fprintf(&b, "\n[[peer]]\nname = \"p%d\"\npublic_key = %q\nallowed_ips = [\"198.18.0.0/15\", \"198.18.%d.%d/32\"]\n",
			i, base64.StdEncoding.EncodeToString(pub), i/250, i%250+2)
	}
	return b.String()
}

// TestOverlapsBounded parses 10,000 peers that all overlap (50 million
// pairs): the report must be 20 overlaps and a count of the rest, within
// a time and memory budget that the pairwise check missed by orders of
// magnitude (it ran out of memory).
func TestOverlapsBounded(t *testing.T) {
	const n = 10000
	text := bigConfig(n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := Parse("big.toml", []byte(text))
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("Parse = nil error, want overlaps")
	}
	errs := errorsOf(t, err)
	if len(errs) != maxOverlapReports+1 {
		t.Fatalf("Parse reported %d problems, want %d:\n%v", len(errs), maxOverlapReports+1, err)
	}
	// Both prefixes of every peer but p0 overlap p0's /15.
	last := errs[len(errs)-1].Msg
	if want := fmt.Sprintf("and %d more allowed_ips", 2*(n-1)-maxOverlapReports); !strings.HasPrefix(last, want) {
		t.Errorf("last problem = %q, want it to start with %q", last, want)
	}
	if !strings.Contains(errs[0].Msg, `peer "p1" allowed_ips 198.18.0.0/15 overlaps 198.18.0.0/15 of peer "p0"`) {
		t.Errorf("first problem = %q, want p1's /15 against p0's", errs[0].Msg)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d peers: %v, %d MB allocated", n, took, alloc>>20)
	if !raceEnabled && took > 2*time.Second {
		t.Errorf("Parse of %d peers took %v, want < 2 s", n, took)
	}
	if alloc > 200<<20 {
		t.Errorf("Parse of %d peers allocated %d MB, want < 200 MB", n, alloc>>20)
	}
}
