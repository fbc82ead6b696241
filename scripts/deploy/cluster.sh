#!/usr/bin/env bash
# make cluster: the kind cluster of k8s/kind-config.yaml (Kubernetes 1.35,
# the storefront's port mapped to 127.0.0.1:30050). An existing cluster of
# that name is kept.
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$deploy_root"

require_docker
require kind kubectl

say "kind cluster $CLUSTER"
if cluster_exists; then
  note "exists: kept (make down deletes it)"
else
  run kind create cluster --name "$CLUSTER" --config k8s/kind-config.yaml --wait 120s
fi
