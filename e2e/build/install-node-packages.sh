#!/usr/bin/env bash
# Debian packages of the test bed's optional node (NODE=1) and of `make image`: containerd (the CRI), runc, the
# CNI plugins, iptables (the node's DNAT rules), dnsmasq (the pods' cluster DNS), buildah and debootstrap (the
# image and its local base).
# Idempotent: exits at once when every program is there. Needs root (the node runs as root anyway).
set -euo pipefail
PACKAGES="containerd runc containernetworking-plugins iptables dnsmasq-base buildah debootstrap"
present() {
  for program in containerd containerd-shim-runc-v2 ctr runc iptables dnsmasq buildah debootstrap; do
    command -v "$program" >/dev/null || return 1
  done
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ]
}
present && exit 0
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $PACKAGES || { apt-get update && apt-get install -y --no-install-recommends $PACKAGES; }
present
