// SPDX-License-Identifier: MIT

// Package packaging holds no Go API: it ships Godwit's systemd unit, sysctl file, example configs and .deb recipe, and its tests check them with systemd-analyze, the config package and dpkg.
package packaging
