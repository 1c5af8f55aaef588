#!/usr/bin/env bash
# Build the OpenBao server (Vault API) from the Go module proxy into the test-bed cache.
# Idempotent: exits at once when the binary exists. Recipe: e2e/testbed/README.md.
#
#   build-openbao.sh                 download modules (if needed) and build
#   build-openbao.sh --download-only only fetch the module graph (cheap on CPU; run it while another build runs)
set -euo pipefail
BAO_VERSION=${BAO_VERSION:-2.4.0}
# OpenBao tags are v2.x.y without a /v2 module suffix, so the proxy lists no usable tag; it serves only some
# exact pseudo-versions. The v2.6.2 commit (testbed.md §4) is refused ("This module version is not available");
# this one, commit f9407a27fbee of v2.4.0, is served.
BAO_PSEUDO=${BAO_PSEUDO:-v0.0.0-20250828202315-f9407a27fbee}
SDK_VERSION=${SDK_VERSION:-v2.4.0}
API_VERSION=${API_VERSION:-v2.4.0}
CACHE=${VAULTBUNDLE_TESTBED_CACHE:-$HOME/.cache/vaultbundle-testbed}
OUT="$CACHE/openbao-$BAO_VERSION"
BIN="$OUT/bin/bao"
MODE=${1:-build}

if [ -x "$BIN" ]; then
  exit 0
fi
mkdir -p "$OUT/src" "$OUT/bin"
# shellcheck source=e2e/build/progress.sh
. "$(dirname "$0")/progress.sh"
cd "$OUT/src"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"

if [ ! -f .modules-ready ]; then
  echo "==> downloading OpenBao $BAO_VERSION's module graph from the Go module proxy into $OUT/src"
  [ -f go.mod ] || go mod init local/baotools >/dev/null 2>&1
  # Seed go.sum with OpenBao's own go.sum: a few of its dependencies (go-kms-wrapping wrappers) are unknown
  # to the checksum database ("verifying module: ... 404"), but OpenBao's go.sum pins their hashes.
  step openbao-source 60 sh -c "go mod download -json github.com/openbao/openbao@$BAO_PSEUDO > openbao-module.json"
  BAO_DIR=$(python3 -c 'import sys,json;print(json.load(open(sys.argv[1]))["Dir"])' openbao-module.json)
  touch go.sum
  sort -u go.sum "$BAO_DIR/go.sum" > go.sum.new && mv -f go.sum.new go.sum
  step openbao-modules 120 go get "github.com/openbao/openbao@$BAO_PSEUDO" \
         "github.com/openbao/openbao/sdk/v2@$SDK_VERSION" \
         "github.com/openbao/openbao/api/v2@$API_VERSION"
  # Fetch every package the main package imports, so that the build step needs no network.
  step openbao-deps 60 sh -c "go list -deps github.com/openbao/openbao >/dev/null"
  touch .modules-ready
fi

if [ "$MODE" = "--download-only" ]; then
  exit 0
fi

echo "==> building the OpenBao $BAO_VERSION server into $BIN"
step openbao 300 go build -v -ldflags "-s -w -X github.com/openbao/openbao/version.fullVersion=$BAO_VERSION" \
  -o "$BIN.tmp" github.com/openbao/openbao
mv -f "$BIN.tmp" "$BIN"
"$BIN" version
