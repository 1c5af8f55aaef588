#!/usr/bin/env bash
# Build the External Secrets Operator (ESO) controller from the Go module proxy into the test-bed cache, for the
# side-by-side benchmark (`make bench-peer`, bench/peer.py). Never part of the product or of CI.
# Idempotent: exits at once when the binary and the CRDs exist.
#
#   build-eso.sh   download the module (if needed), copy it to a writable dir, build, copy the CRDs
#
# Output: $CACHE/eso-$ESO_VERSION/bin/external-secrets and $CACHE/eso-$ESO_VERSION/crds/*.yaml
set -euo pipefail
ESO_VERSION=${ESO_VERSION:-v0.20.4}
CACHE=${VAULTBUNDLE_TESTBED_CACHE:-$HOME/.cache/vaultbundle-testbed}
OUT="$CACHE/eso-$ESO_VERSION"
BIN="$OUT/bin/external-secrets"

if [ -x "$BIN" ] && [ -f "$OUT/crds/.ready" ]; then
  exit 0
fi
mkdir -p "$OUT/bin" "$OUT/crds"
# shellcheck source=e2e/build/progress.sh
. "$(dirname "$0")/progress.sh"
export GOTOOLCHAIN=local CGO_ENABLED=0

cd "$OUT"
if [ ! -f module.json ] || [ ! -d src ]; then
  echo "==> downloading External Secrets Operator $ESO_VERSION from the Go module proxy"
  step eso-source 60 sh -c "go mod download -json github.com/external-secrets/external-secrets@$ESO_VERSION > module.json.tmp"
  mv -f module.json.tmp module.json
  DIR=$(python3 -c 'import sys,json;print(json.load(open(sys.argv[1]))["Dir"])' module.json)
  # The module cache is read-only; the build writes go.mod/go.sum (-mod=mod), so build from a writable copy.
  rm -rf src.tmp
  cp -r "$DIR" src.tmp
  chmod -R u+w src.tmp
  mv src.tmp src
fi

if [ ! -f "$OUT/crds/.ready" ]; then
  # The CRDs ship in the module: config/crds/bases (one file per kind) or deploy/crds (one bundle file).
  if [ -d src/config/crds/bases ]; then
    cp src/config/crds/bases/*.yaml "$OUT/crds/"
  else
    cp src/deploy/crds/*.yaml "$OUT/crds/"
  fi
  rm -f "$OUT/crds/kustomization.yaml"
  touch "$OUT/crds/.ready"
fi

if [ ! -x "$BIN" ]; then
  echo "==> building the External Secrets Operator $ESO_VERSION controller into $BIN"
  cd src
  step eso 960 go build -v -trimpath -mod=mod -ldflags "-s -w" -o "$BIN.tmp" .
  mv -f "$BIN.tmp" "$BIN"
fi
"$BIN" --help >/dev/null 2>&1 || true
echo "==> External Secrets Operator $ESO_VERSION: $BIN"
