// SPDX-License-Identifier: MIT

package tests

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

const (
	port    = 4433
	tunName = "gw0"
)

// key is a private key file and its public key.
type key struct {
	file, pub string
}

// genKey runs `godwit genkey > file` and `godwit pubkey < file`.
func genKey(t *testing.T, l *netlab.Lab, name string) key {
	t.Helper()
	bin := labtest.Godwit(t)
	file := filepath.Join(l.Dir, name+".key")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "genkey")
	cmd.Stdout = f
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	f.Close()
	if err != nil {
		t.Fatalf("godwit genkey: %v: %s", err, stderr.String())
	}
	in, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd = exec.Command(bin, "pubkey")
	cmd.Stdin = in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("godwit pubkey < %s: %v", file, err)
	}
	return key{file: file, pub: strings.TrimSpace(string(out))}
}

// peerConf is one [[peer]] table.
type peerConf struct {
	name     string
	pub      string
	allowed  []string
	endpoint string
	extra    []string // more [[peer]] lines, as written
}

// nodeConf is one daemon's config file.
type nodeConf struct {
	name   string // used for the config, state dir and log file names
	key    key
	addrs  []string
	listen string
	extra  []string // more [interface] lines, as written
	peers  []peerConf
	// logLevel is the daemon's log_level; "" means debug.
	logLevel string
}

func quote(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// write writes the config into the lab's directory and returns its path.
func (c nodeConf) write(t *testing.T, l *netlab.Lab) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[interface]\nname = %q\nprivate_key_file = %q\naddresses = %s\n", tunName, c.key.file, quote(c.addrs))
	if c.listen != "" {
		fmt.Fprintf(&b, "listen = %q\n", c.listen)
	}
	fmt.Fprintf(&b, "state_dir = %q\nlog_level = %q\n", filepath.Join(l.Dir, c.name+"-state"), cmp.Or(c.logLevel, "debug"))
	for _, line := range c.extra {
		fmt.Fprintln(&b, line)
	}
	for _, p := range c.peers {
		fmt.Fprintf(&b, "\n[[peer]]\nname = %q\npublic_key = %q\nallowed_ips = %s\n", p.name, p.pub, quote(p.allowed))
		if p.endpoint != "" {
			fmt.Fprintf(&b, "endpoint = %q\n", p.endpoint)
		}
		for _, line := range p.extra {
			fmt.Fprintln(&b, line)
		}
	}
	path := filepath.Join(l.Dir, c.name+".toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startNode writes c into the lab's directory and runs a daemon with it in
// ns, named c.name, with the extra environment variables env.
func startNode(t *testing.T, l *netlab.Lab, ns *netlab.NS, c nodeConf, env ...string) *labtest.Daemon {
	t.Helper()
	return labtest.StartDaemon(t, ns, c.name, c.write(t, l), env...)
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ipJSON runs `ip -j args...` in ns and decodes the JSON list it prints.
func ipJSON(t *testing.T, ns *netlab.NS, args ...string) []map[string]any {
	t.Helper()
	out, err := ns.Exec(append([]string{"ip", "-j"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var v []map[string]any
	if strings.TrimSpace(out) == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("ip -j %s: %v in %q", strings.Join(args, " "), err, out)
	}
	return v
}

// linkExists reports whether ns has an interface named name.
func linkExists(t *testing.T, ns *netlab.NS, name string) bool {
	t.Helper()
	for _, l := range ipJSON(t, ns, "link", "show") {
		if l["ifname"] == name {
			return true
		}
	}
	return false
}

// rules returns the policy rules of both families as canonical JSON strings,
// sorted, so two snapshots compare as multisets.
func rules(t *testing.T, ns *netlab.NS) []string {
	t.Helper()
	var all []string
	for _, fam := range []string{"-4", "-6"} {
		for _, r := range ipJSON(t, ns, fam, "rule", "show") {
			b, err := json.Marshal(r) // map keys are sorted
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, fam+" "+string(b))
		}
	}
	slices.Sort(all)
	return all
}

// tunRoutes returns every route of both families, in any table, through dev.
func tunRoutes(t *testing.T, ns *netlab.NS, dev string) []string {
	t.Helper()
	var found []string
	for _, fam := range []string{"-4", "-6"} {
		for _, r := range ipJSON(t, ns, fam, "route", "show", "table", "all") {
			if r["dev"] == dev {
				b, _ := json.Marshal(r)
				found = append(found, string(b))
			}
		}
	}
	return found
}

// routes returns every route of both families in every table (except
// IPv6 link-local ones) as
// "family table dst dev gateway" strings, sorted, so two snapshots compare
// as multisets.
func routes(t *testing.T, ns *netlab.NS) []string {
	t.Helper()
	var all []string
	for _, fam := range []string{"-4", "-6"} {
		for _, r := range ipJSON(t, ns, fam, "route", "show", "table", "all") {
			// The kernel adds link-local routes on its own schedule (after
			// DAD on the veths), so they are no evidence either way.
			if dst, _ := r["dst"].(string); strings.HasPrefix(dst, "fe80:") {
				continue
			}
			all = append(all, fmt.Sprintf("%s %v %v %v %v", fam, r["table"], r["dst"], r["dev"], r["gateway"]))
		}
	}
	slices.Sort(all)
	return all
}

// addrs returns the addresses (with prefix length) on dev in ns.
func addrs(t *testing.T, ns *netlab.NS, dev string) []netip.Prefix {
	t.Helper()
	var got []netip.Prefix
	for _, l := range ipJSON(t, ns, "addr", "show") {
		if l["ifname"] != dev {
			continue
		}
		infos, _ := l["addr_info"].([]any)
		for _, i := range infos {
			m, _ := i.(map[string]any)
			s, _ := m["local"].(string)
			n, _ := m["prefixlen"].(float64)
			if a, err := netip.ParseAddr(s); err == nil && !a.IsLinkLocalUnicast() {
				got = append(got, netip.PrefixFrom(a, int(n)))
			}
		}
	}
	return got
}
