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
# shellcheck source=e2e/build/progress.sh
. "$(dirname "$0")/progress.sh"
echo "==> building etcd, kube-apiserver and kube-controller-manager v$K8S from the Go module proxy into $OUT"
cd "$OUT/src"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"
[ -f go.mod ] || go mod init local/kubetools >/dev/null 2>&1
go mod edit -godebug=default=go1.24
step kube-source 60 sh -c "go mod download -json k8s.io/kubernetes@v$K8S > kubernetes-module.json"
GOMOD=$(python3 -c 'import sys,json;print(json.load(open(sys.argv[1]))["GoMod"])' kubernetes-module.json)
for m in $(grep -E '^[[:space:]]+k8s\.io/[A-Za-z0-9._-]+ v0\.0\.0[[:space:]]*$' "$GOMOD" | awk '{print $1}'); do
  go mod edit -replace="$m=$m@v$STAGING"
done
step kube-modules 120 go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S" "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S"
ETCD_V=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
step etcd-modules 30 go get "go.etcd.io/etcd/server/v3@$ETCD_V"
LD="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
build() { # name typical-seconds ldflags package
  [ -x "$OUT/bin/$1" ] && return 0
  step "$1" "$2" go build -v -ldflags "$3" -o "$OUT/bin/$1.tmp" "$4"
  mv -f "$OUT/bin/$1.tmp" "$OUT/bin/$1"
}
build kube-apiserver 360 "$LD" k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager 120 "$LD" k8s.io/kubernetes/cmd/kube-controller-manager
build etcd 45 "-s -w" go.etcd.io/etcd/server/v3
[ -x "$OUT/bin/kube-apiserver" ] && [ -x "$OUT/bin/kube-controller-manager" ] && [ -x "$OUT/bin/etcd" ]
echo "==> kube: all three binaries are in $OUT/bin"
