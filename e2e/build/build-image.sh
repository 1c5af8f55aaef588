#!/usr/bin/env bash
# `make image`: build the operator image from the repository's Dockerfile with buildah (no Docker engine here),
# on the local base image (build-base-image.sh), and save it as a docker-archive for the node's containerd.
# Usage: build-image.sh <repo root> <image tag> <archive path>
# Each run rebuilds (buildah's layer cache keeps an unchanged build quick); the Dockerfile's default base stays
# the pinned python:3.11.17-slim-bookworm for builds against a real registry.
set -euo pipefail
REPO=$1 TAG=$2 ARCHIVE=$3
BASE=${BASE_TAG:-localhost/vaultbundle-base:bookworm-python3.11}
BASE_TAG=$BASE bash "$(dirname "$0")/build-base-image.sh"
# --network host: the builder stage downloads the locked wheels from PyPI (hash-checked).
buildah bud --layers --network host --build-arg "BASE_IMAGE=$BASE" -t "$TAG" -f "$REPO/Dockerfile" "$REPO"
mkdir -p "$(dirname "$ARCHIVE")"
rm -f "$ARCHIVE.tmp"
buildah push --quiet "$TAG" "docker-archive:$ARCHIVE.tmp:$TAG"
mv -f "$ARCHIVE.tmp" "$ARCHIVE"
echo "image $TAG saved to $ARCHIVE"
