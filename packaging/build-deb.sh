#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# build-deb.sh: build the godwit binary and package it as a .deb with nfpm.
#
#   packaging/build-deb.sh [OUTDIR]          (OUTDIR defaults to ./dist)
#
# Environment:
#   GODWIT_VERSION  upstream version; default: packaging/version.sh (it
#                   increases with every commit), else 0.0.0~dev
#   GODWIT_ARCH     amd64 or arm64; default: the Go host architecture
#
# nfpm runs through `go run module@version`, so it is not a dependency of
# the Godwit module (nothing in go.mod); its first run downloads and compiles
# it (about a minute), later runs use the Go build cache. v2.46.0 and later
# need modules from go.digitalxero.dev, which the module proxy does not serve
# here, so the pin stays at the newest v2 that builds from the proxy alone.
set -euo pipefail

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
outdir=${1:-dist}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

arch=${GODWIT_ARCH:-$(go env GOARCH)}
case $arch in
amd64 | arm64) ;;
*) echo "build-deb.sh: GODWIT_ARCH=$arch: want amd64 or arm64" >&2; exit 2 ;;
esac

version=${GODWIT_VERSION:-}
if [ -z "$version" ]; then
	version=$(packaging/version.sh 2>/dev/null || echo 0.0.0~dev)
fi
# The Debian revision: the package is not native (its changelog is
# changelog.Debian.gz), and this is its first and only packaging.
release=1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# CGO off: a static binary that runs on any glibc or musl system of the arch.
CGO_ENABLED=0 GOOS=linux GOARCH=$arch \
	go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$work/godwit" ./cmd/godwit

# What Debian policy wants compressed: the man pages and the changelog,
# with gzip -9n (no name or time stamp inside, so builds are reproducible).
gzip -9n <packaging/man/godwit.8 >"$work/godwit.8.gz"
gzip -9n <packaging/man/godwit.toml.5 >"$work/godwit.toml.5.gz"
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
date=$(git log -1 --format=%cD HEAD 2>/dev/null || date -R)
{
	echo "godwit ($version-$release) unstable; urgency=medium"
	echo
	echo "  * Built from commit $commit."
	echo
	echo " -- Godwit developers <godwit@example.net>  $date"
} | gzip -9n >"$work/changelog.Debian.gz"

GODWIT_VERSION=$version GODWIT_RELEASE=$release GODWIT_ARCH=$arch GODWIT_BIN=$work/godwit GODWIT_GEN=$work \
	go run "$NFPM" pkg --packager deb --config packaging/nfpm.yaml --target "$outdir"
