// SPDX-License-Identifier: MIT

package main

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/tests/bench/measure"
)

// wgSockDir is where wireguard-go puts its UAPI sockets; both instances
// share it, so their interface names must differ.
const wgSockDir = "/var/run/wireguard"

// wgPort is the UDP port the hub-side wireguard-go listens on.
const wgPort = 51820

// buildWireGuard installs wireguard-go from the module proxy into dir and
// returns the binary's path. It runs outside any module so that the
// benchmark's own go.mod does not pin the version.
func buildWireGuard(ctx context.Context, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "install", "golang.zx2c4.com/wireguard@latest")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=", "GO111MODULE=on")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: go install golang.zx2c4.com/wireguard@latest: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return filepath.Join(dir, "wireguard"), nil
}

// wgKey is a Curve25519 key pair as wireguard uses it.
type wgKey struct {
	priv, pub []byte // 32 bytes each
}

func newWGKey() (wgKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return wgKey{}, fmt.Errorf("bench: wireguard key: %w", err)
	}
	return wgKey{priv: k.Bytes(), pub: k.PublicKey().Bytes()}, nil
}

// wgPeer is what one wireguard-go instance is told about its one peer.
type wgPeer struct {
	pub      []byte
	allowed  netip.Prefix
	endpoint netip.AddrPort // zero: none (the peer dials us)
}

// uapiSet returns the UAPI "set" request (the text protocol of
// https://www.wireguard.com/xplatform/) that configures a device with key,
// listenPort (0: leave random) and one peer.
func uapiSet(key wgKey, listenPort int, p wgPeer) string {
	var b strings.Builder
	b.WriteString("set=1\n")
	fmt.Fprintf(&b, "private_key=%s\n", hex.EncodeToString(key.priv))
	if listenPort != 0 {
		fmt.Fprintf(&b, "listen_port=%d\n", listenPort)
	}
	b.WriteString("replace_peers=true\n")
	fmt.Fprintf(&b, "public_key=%s\n", hex.EncodeToString(p.pub))
	if p.endpoint.IsValid() {
		fmt.Fprintf(&b, "endpoint=%s\n", p.endpoint)
	}
	b.WriteString("replace_allowed_ips=true\n")
	fmt.Fprintf(&b, "allowed_ip=%s\n", p.allowed)
	b.WriteString("\n")
	return b.String()
}

// parseUAPIErrno reads a UAPI response up to its terminating blank line
// and returns the value of its errno key.
func parseUAPIErrno(r *bufio.Reader) (int, error) {
	errno := -1
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("bench: uapi response: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return 0, fmt.Errorf("bench: uapi response line %q", line)
		}
		if k == "errno" {
			// wireguard-go writes errno=%d: plain decimal, no sign or
			// leading zeros.
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || strconv.Itoa(n) != v {
				return 0, fmt.Errorf("bench: uapi errno %q", v)
			}
			errno = n
		}
	}
	if errno < 0 {
		return 0, errors.New("bench: uapi response without errno")
	}
	return errno, nil
}

// uapiConfigure sends req to the UAPI socket of interface ifname and checks
// that the answer is errno=0.
func uapiConfigure(ifname, req string) error {
	sock := filepath.Join(wgSockDir, ifname+".sock")
	// The socket file appears when wireguard-go binds it, a moment before
	// it listens: until then a dial is refused.
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	for deadline := time.Now().Add(2 * time.Second); errors.Is(err, syscall.ECONNREFUSED) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		c, err = net.DialTimeout("unix", sock, 5*time.Second)
	}
	if err != nil {
		return fmt.Errorf("bench: uapi %s: %w", sock, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return fmt.Errorf("bench: uapi %s: %w", sock, err)
	}
	if _, err := c.Write([]byte(req)); err != nil {
		return fmt.Errorf("bench: uapi %s: %w", sock, err)
	}
	errno, err := parseUAPIErrno(bufio.NewReader(c))
	if err != nil {
		return fmt.Errorf("bench: uapi %s: %w", sock, err)
	}
	if errno != 0 {
		return fmt.Errorf("bench: uapi %s: errno=%d", sock, errno)
	}
	return nil
}

// waitFile waits up to within for path to exist, or until exited
// reports true.
func waitFile(ctx context.Context, path string, within time.Duration, exited func() bool) error {
	err := netlab.WaitFor(ctx, within, path, func() (bool, error) {
		if _, err := os.Stat(path); err == nil {
			return true, nil
		}
		if exited() {
			return false, fmt.Errorf("process exited before creating %s", path)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// startWireGuard runs one wireguard-go per namespace (the hub under taskset
// with opts.hubCPUs), configures them over UAPI and brings the interfaces
// up. The returned tunnelUp (non-nil once a process was started, also with
// an error) lists the processes to stop.
func startWireGuard(ctx context.Context, t *topo, opts startOpts) (*tunnelUp, error) {
	hubIf, siteIf := "wgb"+t.lab.ID+"h", "wgb"+t.lab.ID+"s"
	hubIn, siteIn := netip.MustParsePrefix("198.19.1.1/24"), netip.MustParsePrefix("198.19.1.2/24")
	for _, ifn := range []string{hubIf, siteIf} {
		sock := filepath.Join(wgSockDir, ifn+".sock")
		if _, err := os.Stat(sock); err == nil {
			return nil, fmt.Errorf("bench: %s already exists", sock)
		}
	}
	hk, err := newWGKey()
	if err != nil {
		return nil, err
	}
	sk, err := newWGKey()
	if err != nil {
		return nil, err
	}
	up := &tunnelUp{hubAddr: hubIn.Addr(), proto: "udp", port: wgPort}
	// wireguard-go removes its socket when it stops cleanly; after a SIGKILL
	// this removes the leftover (the names carry the run's ID).
	up.cleanup = func() {
		for _, ifn := range []string{hubIf, siteIf} {
			_ = os.Remove(filepath.Join(wgSockDir, ifn+".sock"))
		}
	}
	if v, err := commandOutput(ctx, "", t.wgBin, "--version"); err == nil {
		up.version = strings.SplitN(v, "\n", 2)[0]
	}
	for _, s := range []struct {
		ns    *netlab.NS
		name  string
		ifn   string
		key   wgKey
		port  int
		peer  wgPeer
		inner netip.Prefix
	}{
		{t.hub, "wireguard-hub", hubIf, hk, wgPort, wgPeer{pub: sk.pub, allowed: netip.PrefixFrom(siteIn.Addr(), 32)}, hubIn},
		{t.site, "wireguard-site", siteIf, sk, 0, wgPeer{pub: hk.pub, allowed: netip.PrefixFrom(hubIn.Addr(), 32), endpoint: netip.AddrPortFrom(t.hubVethIP, wgPort)}, siteIn},
	} {
		// env and taskset exec too, so the pid stays the daemon's.
		// Foreground mode keeps it our child and silences the "use the
		// kernel module" banner.
		args := []string{"env", "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error", t.wgBin, s.ifn}
		if s.ns == t.hub && opts.hubCPUs > 0 {
			args = append([]string{"taskset", "-c", cpuList(opts.hubCPUs)}, args...)
		}
		p, err := s.ns.Start(s.name+"-"+opts.tag, args...)
		if err != nil {
			return up, err
		}
		up.procs = append(up.procs, p)
		sock := filepath.Join(wgSockDir, s.ifn+".sock")
		if err := waitFile(ctx, sock, 10*time.Second, func() bool { return p.Exited() }); err != nil {
			return up, fmt.Errorf("%w%s", err, measure.ProcLogs(up.procs...))
		}
		if err := uapiConfigure(s.ifn, uapiSet(s.key, s.port, s.peer)); err != nil {
			return up, err
		}
		if err := s.ns.Addr(s.ifn, s.inner.String()); err != nil {
			return up, err
		}
		if _, err := s.ns.Exec("ip", "link", "set", s.ifn, "up"); err != nil {
			return up, err
		}
	}
	if up.mtu, err = linkMTU(t.site, siteIf); err != nil {
		return up, err
	}
	return up, nil
}
