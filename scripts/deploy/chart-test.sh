#!/usr/bin/env bash
# Static checks of the Helm chart, for the default values, every value set
# the chart documents (helm/meshcart/values-*.yaml) and the tests' own
# (test/deploy/values/*.yaml: the pod settings and extraEnv):
#   - helm lint --strict
#   - helm template, then kubeconform -strict: every object against the
#     Kubernetes schemas (unknown fields are errors, as for kubectl apply)
#     and every custom resource against the real CRDs (scripts/deploy/schemas.sh)
# Image tags are the content-derived ones `make deploy` would use.
#
#   scripts/deploy/chart-test.sh      (make chart-test runs it, then the invariant tests)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
# shellcheck source=/dev/null
source versions.env

chart=helm/meshcart
schemas=$(scripts/deploy/schemas.sh --print-dir)
kube_version=${KUBERNETES_SCHEMA_VERSION}
for tool in helm kubeconform node; do
  command -v "$tool" >/dev/null 2>&1 || { echo "chart-test: $tool is missing (scripts/tools.sh helm kubeconform installs the pinned ones)" >&2; exit 1; }
done
[[ -d $schemas/kubernetes/v${kube_version}-strict && -d $schemas/crds ]] ||
  { echo "chart-test: no schemas in $schemas: run scripts/deploy/schemas.sh first" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
node scripts/deploy/image-tag.mjs --values >"$work/tags.yaml"

passed=0
failed=0
check() {
  local name=$1
  shift
  if "$@" >"$work/out" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    sed 's/^/     /' "$work/out"
  fi
}

validate() {
  local values=$1 rendered=$work/rendered.yaml
  helm template meshcart "$chart" --namespace meshcart --kube-version "$kube_version" \
    -f "$work/tags.yaml" ${values:+-f "$values"} >"$rendered"
  kubeconform -strict -summary \
    -kubernetes-version "$kube_version" \
    -schema-location "$schemas/kubernetes/v${kube_version}-strict/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    -schema-location "$schemas/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
    "$rendered"
}

sets=("")
for file in "$chart"/values-*.yaml test/deploy/values/*.yaml; do sets+=("$file"); done
for values in "${sets[@]}"; do
  label=${values:-default values}
  check "helm lint --strict ($label)" helm lint --strict "$chart" --kube-version "$kube_version" -f "$work/tags.yaml" ${values:+-f "$values"}
  check "kubeconform -strict ($label)" validate "$values"
done

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
