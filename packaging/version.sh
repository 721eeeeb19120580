#!/bin/sh
# SPDX-License-Identifier: MIT
#
# version.sh: print the Debian upstream version of the commit checked out in
# the current directory's git repository, one that increases with every
# commit:
#
#   at a tag vX.Y.Z                 X.Y.Z
#   after the latest tag vX.Y.Z     X.Y.Z+git<commit time>.<hash>
#   before any tag                  0.1.0~git<commit time>.<hash>
#
# The commit time is the committer date in UTC as YYYYMMDDHHMMSS, so the
# order is the order in which commits landed on the branch, and it needs no
# history: a shallow clone gives the same version as a full one (a tag
# must be fetched to count). With uncommitted changes to tracked files,
# ".dirty" is appended.
set -eu

ts=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)
hash=$(git rev-parse --short=12 HEAD)
tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' HEAD 2>/dev/null || true)
if [ -n "$tag" ] && [ "$(git rev-list -n 1 "$tag")" = "$(git rev-parse HEAD)" ]; then
	version=${tag#v}
elif [ -n "$tag" ]; then
	version=${tag#v}+git$ts.$hash
else
	version=0.1.0~git$ts.$hash
fi
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	version=$version.dirty
fi
echo "$version"
