// SPDX-License-Identifier: MIT

package tests

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

const exConfig = 78 // EX_CONFIG

// TestGenkeyMode checks that genkey into a regular file makes it 0600.
func TestGenkeyMode(t *testing.T) {
	l := labtest.NewLab(t, "gwt")
	k := genKey(t, l, "mode")
	fi, err := os.Stat(k.file)
	must(t, err)
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode of genkey output file = %v, want 0600", got)
	}
	if k.pub == "" {
		t.Errorf("pubkey printed nothing")
	}
}

// TestCheckAndRunBadConfig: `godwit check` accepts a good config, rejects a
// broken one with exit 78 and a FILE:LINE line per problem, and `godwit
// run` on the broken config exits 78 without creating the TUN.
func TestCheckAndRunBadConfig(t *testing.T) {
	l := labtest.NewLab(t, "gwt")
	bin := labtest.Godwit(t)
	k := genKey(t, l, "node")
	p := genKey(t, l, "peer")
	goodFile := nodeConf{name: "good", key: k, addrs: []string{"198.19.0.1/24"}, listen: "127.0.0.1:4433",
		peers: []peerConf{{name: "a", pub: p.pub, allowed: []string{"198.19.0.2/32"}}}}.write(t, l)
	if out, err := exec.Command(bin, "check", "-c", goodFile).CombinedOutput(); err != nil {
		t.Fatalf("godwit check on a good config: %v: %s", err, out)
	}

	// Three independent problems, on lines 6, 10 and 16.
	bad := fmt.Sprintf(`[interface]
name = "gw0"
private_key_file = %q
addresses = ["198.19.0.1/24"]
listen = "127.0.0.1:4433"
bogus_key = 1
state_dir = %q

[[peer]]
name = "bad name!"
public_key = %q
allowed_ips = ["198.19.0.2/32"]

[[peer]]
name = "b"
public_key = "not-a-key"
allowed_ips = ["198.19.0.3/32"]
`, k.file, filepath.Join(l.Dir, "state"), p.pub)
	badFile := filepath.Join(l.Dir, "bad.toml")
	must(t, os.WriteFile(badFile, []byte(bad), 0o644))
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "check", "-c", badFile)
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exConfig {
		t.Fatalf("godwit check on a bad config: %v, want exit %d; stderr:\n%s", err, exConfig, stderr.String())
	}
	for _, line := range []int{6, 10, 16} {
		if want := fmt.Sprintf("%s:%d: ", badFile, line); !strings.Contains(stderr.String(), want) {
			t.Errorf("godwit check stderr lacks %q:\n%s", want, stderr.String())
		}
	}

	ns, err := l.NS("bad")
	must(t, err)
	before := rules(t, ns)
	d := labtest.StartDaemon(t, ns, "bad-run", badFile)
	code, err := d.Wait(10 * time.Second)
	if err != nil || code != exConfig {
		t.Errorf("godwit run on a bad config: exit %d, %v; want %d", code, err, exConfig)
	}
	if linkExists(t, ns, tunName) {
		t.Errorf("godwit run on a bad config created %s", tunName)
	}
	if got := rules(t, ns); strings.Join(got, "\n") != strings.Join(before, "\n") {
		t.Errorf("godwit run on a bad config changed the policy rules: %q, want %q", got, before)
	}
	if !strings.Contains(d.Output(), badFile+":6: ") {
		t.Errorf("godwit run output lacks %s:6:\n%s", badFile, d.Output())
	}
}
