#!/usr/bin/env bash
# staticcheck for p2kit: installs a pinned staticcheck from the Go module
# proxy (unless that exact version is already installed) and checks every
# package. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

# 2026.2.2 (module version v0.8.2) supports Go 1.26. Bump together with the
# Go toolchain.
STATICCHECK_VERSION=v0.8.2

bin="$(go env GOBIN)"
[ -n "$bin" ] || bin="$(go env GOPATH)/bin"
sc="$bin/staticcheck"
if ! "$sc" -version 2>/dev/null | grep -qF "(${STATICCHECK_VERSION#v})"; then
  echo "installing honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
  GOFLAGS=-buildvcs=false go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
"$sc" -version
"$sc" ./...
echo "staticcheck: no findings"
