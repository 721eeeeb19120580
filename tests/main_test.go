// SPDX-License-Identifier: MIT

package tests

import (
	"os"
	"testing"

	"github.com/godwit-vpn/godwit/routing/netlab"
)

// TestMain removes the godwit binary the tests built, once they are done.
func TestMain(m *testing.M) {
	code := m.Run()
	netlab.RemoveBuild()
	os.Exit(code)
}
