#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager and etcd from the Go module proxy into the test-bed cache.
# Idempotent: exits at once when all three binaries exist. Recipe: e2e/testbed/README.md.
set -euo pipefail
K8S=${K8S:-1.34.4}
MINOR=$(echo "$K8S" | cut -d. -f2)
STAGING="0.${K8S#1.}"
CACHE=${VAULTBUNDLE_TESTBED_CACHE:-$HOME/.cache/vaultbundle-testbed}
OUT="$CACHE/k8s-$K8S"
if [ -x "$OUT/bin/kube-apiserver" ] && [ -x "$OUT/bin/kube-controller-manager" ] && [ -x "$OUT/bin/etcd" ]; then
  exit 0
fi
mkdir -p "$OUT/src" "$OUT/bin"
cd "$OUT/src"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"
[ -f go.mod ] || go mod init local/kubetools >/dev/null 2>&1
go mod edit -godebug=default=go1.24
GOMOD=$(go mod download -json "k8s.io/kubernetes@v$K8S" | python3 -c 'import sys,json;print(json.load(sys.stdin)["GoMod"])')
for m in $(grep -E '^[[:space:]]+k8s\.io/[A-Za-z0-9._-]+ v0\.0\.0[[:space:]]*$' "$GOMOD" | awk '{print $1}'); do
  go mod edit -replace="$m=$m@v$STAGING"
done
go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S" "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S"
ETCD_V=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
go get "go.etcd.io/etcd/server/v3@$ETCD_V"
LD="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
[ -x "$OUT/bin/kube-apiserver" ] || { go build -ldflags "$LD" -o "$OUT/bin/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver && mv -f "$OUT/bin/kube-apiserver.tmp" "$OUT/bin/kube-apiserver"; }
[ -x "$OUT/bin/kube-controller-manager" ] || { go build -ldflags "$LD" -o "$OUT/bin/kube-controller-manager.tmp" k8s.io/kubernetes/cmd/kube-controller-manager && mv -f "$OUT/bin/kube-controller-manager.tmp" "$OUT/bin/kube-controller-manager"; }
[ -x "$OUT/bin/etcd" ] || { go build -ldflags "-s -w" -o "$OUT/bin/etcd.tmp" go.etcd.io/etcd/server/v3 && mv -f "$OUT/bin/etcd.tmp" "$OUT/bin/etcd"; }
[ -x "$OUT/bin/kube-apiserver" ] && [ -x "$OUT/bin/kube-controller-manager" ] && [ -x "$OUT/bin/etcd" ]
