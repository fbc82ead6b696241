#!/usr/bin/env bash
# make deploy: from nothing to meshcart running, meshed and observed on kind:
# the cluster, the mesh, the images, then the chart (helm upgrade --install
# --wait, reporting the pods that are not ready yet), then what to do next.
# Every step skips what is already in place; when the release already runs
# exactly what would be installed, Helm is not called at all, so a second
# `make deploy` with no change changes nothing.
#
#   VALUES=helm/meshcart/values-canary.yaml make deploy   # an extra values file
#   IMAGES=ghcr.io/<owner>/meshcart:0.1.0 make deploy     # published images: no build
#   DRY_RUN=1 make deploy                                  # print the commands only
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/deploy/rollout.sh
source "$(dirname "${BASH_SOURCE[0]}")/rollout.sh"
cd "$deploy_root"
here=scripts/deploy

require_docker
require kind kubectl helm linkerd node
[[ -z ${VALUES:-} || -f $VALUES ]] || die "VALUES=$VALUES: no such file"
# Published images (the release workflow's): <repository>:<version>, each
# service's image being <repository>/<service>:<version>. The node pulls them.
if [[ -n ${IMAGES:-} && ! ${IMAGES:-} =~ ^[a-z0-9][a-z0-9._:/-]*[a-z0-9]:[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]]; then
  die "IMAGES=$IMAGES: expected <repository>:<version>, for example IMAGES=ghcr.io/<owner>/meshcart:0.1.0"
fi

"$here/cluster.sh"
"$here/mesh.sh"
if [[ -n ${IMAGES:-} ]]; then
  say "images ${IMAGES%:*}/<service>:${IMAGES##*:}"
  note "published: the kind node pulls them"
else
  "$here/images.sh"
fi

say "namespace $NAMESPACE (meshed)"
if query kubectl --context "$CONTEXT" get namespace "$NAMESPACE" >/dev/null; then
  note "exists: kept"
else
  run kubectl --context "$CONTEXT" create namespace "$NAMESPACE"
fi
inject=$(query kubectl --context "$CONTEXT" get namespace "$NAMESPACE" -o 'jsonpath={.metadata.annotations.linkerd\.io/inject}' || true)
if [[ $inject != enabled ]]; then
  run kubectl --context "$CONTEXT" annotate namespace "$NAMESPACE" --overwrite linkerd.io/inject=enabled
fi

chart_arguments cluster

say "Helm release $RELEASE"
# What the cluster runs against what this checkout would install (lib.sh).
if release_is_current "${chart[@]}"; then
  note "runs exactly this checkout: kept"
else
  run_watching_pods helm upgrade --install "${chart[@]}" --wait --timeout 10m
fi

cat >&2 <<NEXT

meshcart is deployed on kind cluster $CLUSTER, namespace $NAMESPACE.
Next:
  make smoke        grpcurl on localhost:$STOREFRONT_PORT: list, place an order, read it back
  helm test $RELEASE -n $NAMESPACE --kube-context $CONTEXT
                    every service healthy; an order through storefront reaches CONFIRMED
  make dashboard    Linkerd viz: each workload's success rate, RPS, latency; edges (mTLS), tap, top
  make traces       Jaeger on http://localhost:16686/jaeger/ (services' and proxies' spans)
  make grafana      Grafana on http://localhost:50750/grafana/: "meshcart mesh" has what viz
                    cannot show (per GRPCRoute, retries, canary split, authorization, rate
                    limits, circuit breakers); "meshcart" has the services' own metrics
  make down         delete the cluster and the meshcart images
NEXT
