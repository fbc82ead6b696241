#!/usr/bin/env bash
# The CustomResourceDefinitions the chart's custom resources need, Linkerd
# 2.20's and the Gateway API's (versions.env), as files or folders, one
# path a line on stdout. Used by schemas.sh (kubeconform's schemas) and by
# apiserver-test.sh (applied to a real API server).
#
#   scripts/deploy/crds.sh
#
# From MESHCART_CRDS (files or folders, space-separated), else from
# ../shared/crds next to the repository (CI), else fetched once into
# .tools/crds/: the pinned linkerd-crds chart rendered with helm (the chart
# `linkerd install --crds` renders, without that command's need for a
# cluster with the Gateway API: linkerd2 #13834) and the Gateway API release
# file (`make mesh` applies the same two on the cluster).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=/dev/null
source "$root/versions.env"

die() {
  echo "crds.sh: error: $*" >&2
  exit 1
}

if [[ -n ${MESHCART_CRDS:-} ]]; then
  read -r -a sources <<<"$MESHCART_CRDS"
  printf '%s\n' "${sources[@]}"
  exit 0
fi
if [[ -d $root/../shared/crds ]]; then
  (cd "$root/../shared/crds" && pwd)
  exit 0
fi

dir="$root/.tools/crds"
linkerd="$dir/linkerd-crds-$LINKERD_VERSION.yaml"
gateway="$dir/gateway-api-$GATEWAY_API_VERSION-standard-install.yaml"
mkdir -p "$dir"
if [[ ! -s $linkerd ]]; then
  # Edge release edge-YY.M.P is chart version 20YY.M.P.
  chart_version="20${LINKERD_VERSION#edge-}"
  helm template linkerd-crds linkerd-crds --repo https://helm.linkerd.io/edge --version "$chart_version" \
    >"$linkerd.tmp" ||
    die "cannot render the linkerd-crds chart $chart_version (needs the internet once); or set MESHCART_CRDS to CRD files or folders"
  mv "$linkerd.tmp" "$linkerd"
fi
if [[ ! -s $gateway ]]; then
  curl -fsSL -o "$gateway.tmp" \
    "https://github.com/kubernetes-sigs/gateway-api/releases/download/${GATEWAY_API_VERSION}/standard-install.yaml" ||
    die "cannot download the Gateway API ${GATEWAY_API_VERSION} CRDs (needs the internet once); or set MESHCART_CRDS"
  mv "$gateway.tmp" "$gateway"
fi
printf '%s\n' "$linkerd" "$gateway"
