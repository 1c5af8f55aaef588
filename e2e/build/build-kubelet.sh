#!/usr/bin/env bash
# Build kubelet and kube-scheduler (the test bed's optional node, NODE=1) from the Go module proxy into the same
# cache directory as build-kube.sh, reusing its go.mod (same replaces, same Go build cache).
# Idempotent: exits at once when both binaries exist.
set -euo pipefail
K8S=${K8S:-1.34.4}
MINOR=$(echo "$K8S" | cut -d. -f2)
CACHE=${VAULTBUNDLE_TESTBED_CACHE:-$HOME/.cache/vaultbundle-testbed}
OUT="$CACHE/k8s-$K8S"
if [ -x "$OUT/bin/kubelet" ] && [ -x "$OUT/bin/kube-scheduler" ]; then
  exit 0
fi
[ -f "$OUT/src/go.mod" ] || bash "$(dirname "$0")/build-kube.sh"
cd "$OUT/src"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"
go get "k8s.io/kubernetes/cmd/kubelet@v$K8S" "k8s.io/kubernetes/cmd/kube-scheduler@v$K8S"
LD="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
for cmd in kubelet kube-scheduler; do
  [ -x "$OUT/bin/$cmd" ] || { go build -ldflags "$LD" -o "$OUT/bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" && mv -f "$OUT/bin/$cmd.tmp" "$OUT/bin/$cmd"; }
done
[ -x "$OUT/bin/kubelet" ] && [ -x "$OUT/bin/kube-scheduler" ]
