#!/usr/bin/env bash
# The node's pod-sandbox ("pause") image, made locally: a static Go binary (pause/pause.go) in an otherwise
# empty image, committed with buildah and saved as a docker-archive that the node's containerd imports.
# Idempotent: exits at once when the archive exists.
set -euo pipefail
TAG=${PAUSE_TAG:-localhost/vaultbundle-pause:3.10}
CACHE=${VAULTBUNDLE_TESTBED_CACHE:-$HOME/.cache/vaultbundle-testbed}
OUT="$CACHE/node"
ARCHIVE="$OUT/pause-image.tar"
[ -f "$ARCHIVE" ] && exit 0
mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)
CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath go build -ldflags "-s -w" -o "$OUT/pause" "$HERE/pause/pause.go"
CTR=$(buildah from scratch)
trap 'buildah rm "$CTR" >/dev/null 2>&1 || true' EXIT
buildah copy --quiet --chmod 0755 "$CTR" "$OUT/pause" /pause
buildah config --entrypoint '["/pause"]' --user 65535:65535 "$CTR"
buildah commit --quiet "$CTR" "$TAG" >/dev/null
rm -f "$ARCHIVE.tmp"
buildah push --quiet "$TAG" "docker-archive:$ARCHIVE.tmp:$TAG"
mv -f "$ARCHIVE.tmp" "$ARCHIVE"
echo "pause image $TAG saved to $ARCHIVE"
