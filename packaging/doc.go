// SPDX-License-Identifier: MIT

// Package packaging holds no Go API: it ships Godwit's systemd unit, sysctl file, example configs, man pages, bash completion, Prometheus alert rules, Grafana dashboard and .deb recipe, and its tests check them with systemd-analyze, the config package, groff, bash, promtool, dpkg and lintian.
package packaging
