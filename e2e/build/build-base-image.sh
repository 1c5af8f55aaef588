#!/usr/bin/env bash
# Make the operator image's base locally (no image registry is reachable here): debootstrap a minimal Debian
# bookworm rootfs with Debian's python3.11 (+ venv and pip for the Dockerfile's builder stage) and commit it with
# buildah under a local tag. The Dockerfile takes it as `--build-arg BASE_IMAGE=<tag>`; its default stays the
# pinned python:3.11.17-slim-bookworm for real registries.
# Idempotent: exits at once when the tag exists in buildah's store. The rootfs tarball is cached in the test-bed
# cache, so a rebuilt store does not need the mirror again.
set -euo pipefail
TAG=${BASE_TAG:-localhost/vaultbundle-base:bookworm-python3.11}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${VAULTBUNDLE_TESTBED_CACHE:-$HOME/.cache/vaultbundle-testbed}
OUT="$CACHE/base-$SUITE-python3.11"
TARBALL="$OUT/rootfs.tar"

if buildah inspect --type image "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG present"
  exit 0
fi
mkdir -p "$OUT"
if [ ! -f "$TARBALL" ]; then
  ROOTFS="$OUT/rootfs.tmp"
  rm -rf "$ROOTFS"
  echo "debootstrap $SUITE (minbase + python3.11) from $MIRROR"
  debootstrap --variant=minbase --include=python3.11,python3-venv,python3-pip,python-is-python3,ca-certificates \
    "$SUITE" "$ROOTFS" "$MIRROR"
  # This network's TLS is inspected by a local CA: pip inside the build trusts what the host trusts.
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
  # A smaller layer: no apt lists, caches, docs or man pages.
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/*
  tar --numeric-owner -C "$ROOTFS" -cf "$TARBALL.tmp" .
  mv -f "$TARBALL.tmp" "$TARBALL"
  rm -rf "$ROOTFS"
fi
echo "importing $TARBALL as $TAG"
CTR=$(buildah from scratch)
trap 'buildah rm "$CTR" >/dev/null 2>&1 || true' EXIT
MNT=$(buildah mount "$CTR")
tar --numeric-owner -C "$MNT" -xf "$TARBALL"
buildah umount "$CTR" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
  --cmd /usr/bin/python3 --label org.opencontainers.image.description="debootstrap $SUITE minbase + python3.11" "$CTR"
buildah commit --quiet "$CTR" "$TAG"
