// SPDX-License-Identifier: MIT

package main

// BIRD 2 in the two-hub lab (TESTING.md section 8): one BIRD per hub
// namespace learns the kernel routes godwit installs with its protocol
// number and announces them over eBGP to the core's BIRD, which exports
// them to the core's kernel.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
)

// The core's BGP sessions, by hub, and the AS numbers (private range).
const (
	birdPeerA = "hub_a"
	birdPeerB = "hub_b"
	coreAS    = 65000
)

// birdStart bounds the wait for every BGP session to be Established.
const birdStart = 20 * time.Second

// birdProc is a running BIRD and its control socket.
type birdProc struct {
	proc *netlab.Proc
	sock string
}

// birdAvailable says clearly when bird or birdc is missing.
func birdAvailable() error {
	for _, c := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("hubscale: -hubs 2 with BGP needs BIRD 2 (Debian package bird2), or use -bgp=false: %w", err)
		}
	}
	return nil
}

// birdHubConfig is the BIRD config of a hub: its kernel routes of
// protocol proto are announced to the core at neighbor, nothing is
// imported.
func birdHubConfig(local, neighbor netip.Addr, as, proto int) string {
	return fmt.Sprintf(`router id %[1]s;
protocol device { scan time 10; }
protocol kernel {
	ipv4 { import filter { if krt_source = %[4]d then accept; reject; }; export none; };
	learn;
	scan time 10;
}
protocol bgp core {
	local %[1]s as %[3]d;
	neighbor %[2]s as %[5]d;
	connect delay time 1;
	connect retry time 2;
	ipv4 { import none; export all; };
}
`, local, neighbor, as, proto, coreAS)
}

// birdPeer is one BGP session of the core.
type birdPeer struct {
	name            string
	local, neighbor netip.Addr
	as              int
}

// birdCoreConfig is the BIRD config of the core: routes learned from the
// hubs go into its kernel.
func birdCoreConfig(id netip.Addr, peers []birdPeer) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\nprotocol device { scan time 10; }\nprotocol kernel {\n\tipv4 { import none; export all; };\n\tscan time 10;\n}\n", id)
	for _, p := range peers {
		fmt.Fprintf(&b, "protocol bgp %s {\n\tlocal %s as %d;\n\tneighbor %s as %d;\n\tconnect delay time 1;\n\tconnect retry time 2;\n\tipv4 { import all; export none; };\n}\n",
			p.name, p.local, coreAS, p.neighbor, p.as)
	}
	return b.String()
}

// startBird writes conf and starts BIRD in ns under name.
func startBird(lab *netlab.Lab, ns *netlab.NS, name, conf string) (*birdProc, error) {
	path := filepath.Join(lab.Dir, name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("hubscale: %w", err)
	}
	sock := filepath.Join(lab.Dir, name+".ctl")
	p, err := ns.Start(name, "bird", "-f", "-c", path, "-s", sock)
	if err != nil {
		return nil, err
	}
	return &birdProc{proc: p, sock: sock}, nil
}

// startBirds starts BIRD on both hubs and on the core and waits until the
// core's two sessions are Established. It returns the core's BIRD.
func startBirds(ctx context.Context, lab *netlab.Lab, core *netlab.NS, hubs [2]*hub) (*birdProc, error) {
	peers := []birdPeer{
		{birdPeerA, coreA.Addr(), hubACore.Addr(), coreAS + 1},
		{birdPeerB, coreB.Addr(), hubBCore.Addr(), coreAS + 2},
	}
	for i, h := range hubs {
		b, err := startBird(lab, h.ns, "bird-"+h.spec.name, birdHubConfig(peers[i].neighbor, peers[i].local, peers[i].as, routeProtocol))
		if err != nil {
			return nil, err
		}
		h.bird = b
	}
	cb, err := startBird(lab, core, "bird-core", birdCoreConfig(coreA.Addr(), peers))
	if err != nil {
		return nil, err
	}
	err = netlab.WaitFor(ctx, birdStart, "the core's BGP sessions to both hubs", func() (bool, error) {
		if cb.proc.Exited() {
			return false, errors.New("the core's BIRD exited")
		}
		out, err := cb.birdc("show", "protocols")
		if err != nil {
			return false, nil // not listening yet
		}
		return established(out, birdPeerA) && established(out, birdPeerB), nil
	})
	if err != nil {
		return nil, fmt.Errorf("hubscale: %w%s", err, birdLogs(cb, hubs[0].bird, hubs[1].bird))
	}
	return cb, nil
}

// birdLogs is the tail of each BIRD's log.
func birdLogs(bs ...*birdProc) string {
	var b strings.Builder
	for _, p := range bs {
		if p != nil {
			fmt.Fprintf(&b, "\n--- %s:\n%s", p.proc.Name, p.proc.Output())
		}
	}
	return b.String()
}

// birdc runs birdc on b's socket.
func (b *birdProc) birdc(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", b.sock}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("hubscale: birdc %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// count is how many networks have their primary route from the BGP
// session peer.
func (b *birdProc) count(peer string) (int, error) {
	out, err := b.birdc("show", "route", "primary", "protocol", peer, "count")
	if err != nil {
		return 0, err
	}
	return parseRouteCount(out)
}

// established reports whether birdc's "show protocols" output has
// protocol name in state Established.
func established(out, name string) bool {
	for l := range strings.Lines(out) {
		f := strings.Fields(l)
		if len(f) >= 6 && f[0] == name && f[3] == "up" && f[len(f)-1] == "Established" {
			return true
		}
	}
	return false
}

// parseRouteCount reads the count from birdc's "show route ... count"
// output: "N of M routes for K networks in table master4" (the first
// number counts the routes that pass the filters).
func parseRouteCount(out string) (int, error) {
	for l := range strings.Lines(out) {
		f := strings.Fields(l)
		if len(f) >= 4 && f[1] == "of" && f[3] == "routes" {
			n, err := strconv.Atoi(f[0])
			if err == nil {
				return n, nil
			}
		}
	}
	return 0, fmt.Errorf("hubscale: no route count in birdc's output %q", out)
}
