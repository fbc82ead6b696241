#!/usr/bin/env bash
# Fails when the committed generated code differs from what its sources
# produce: proto/ (and proto/mesh.yaml), and the chart's values.yaml comments.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/generate.sh
paths=(services/contracts/src services/contracts/descriptor helm/meshcart/templates/mesh-authorization.yaml helm/meshcart/templates/mesh-routes.yaml helm/meshcart/templates/_mesh-failure-accrual.tpl docs/mesh-contract.md dashboards/meshcart-mesh.json dashboards/linkerd-*.json helm/meshcart/values.schema.json helm/meshcart/README.md)
if ! git diff --quiet -- "${paths[@]}" || [[ -n "$(git ls-files --others --exclude-standard -- "${paths[@]}")" ]]; then
  echo "Generated code is out of date with proto/, proto/mesh.yaml or helm/meshcart/values.yaml. Run 'npm run generate' and commit the result:" >&2
  git status --short -- "${paths[@]}" >&2
  exit 1
fi
echo "generated code matches proto/ and the chart's values.yaml"
