#!/usr/bin/env bash
# VMware's vSphere API simulator (govmomi's vcsim) with Vigil's fault endpoints, built from Debian's
# govmomi source (no Go module download: Debian ships the source and its dependencies under
# /usr/share/gocode). The program is packages/testbed/vcsim/*.go; tests start it through
# packages/testbed/src/vcsim.ts.
#   scripts/vcsim.sh [dir]   (default /var/cache/vigil/vcsim; idempotent, about 30 s when it builds)
set -euo pipefail
OUT=${1:-/var/cache/vigil/vcsim}
SRC="$(cd "$(dirname "$0")/../packages/testbed/vcsim" && pwd)"
BIN="$OUT/vigil-vcsim"
# Rebuild when any source (the Go files, the WSDL they embed) is newer than the binary.
if [ -x "$BIN" ] && [ -z "$(find "$SRC" -maxdepth 1 \( -name '*.go' -o -name '*.wsdl' \) -newer "$BIN" -print -quit)" ]; then
  exit 0
fi
mkdir -p "$OUT"
cd "$SRC"
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$OUT/go-build" go build -o "$BIN.tmp" .
mv "$BIN.tmp" "$BIN"
echo "vcsim: $BIN"
