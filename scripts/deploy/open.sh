#!/usr/bin/env bash
# make dashboard | traces | grafana: opens a UI of the cluster (Ctrl-C stops).
#   dashboard  Linkerd viz (linkerd viz dashboard opens the browser itself)
#   traces     Jaeger UI   on http://localhost:16686 (a port-forward)
#   grafana    Grafana     on http://localhost:3000  (a port-forward)
# Port-forwards reach the pod directly, past its proxy: fine for a UI, never
# for showing the mesh's policies (use the storefront's NodePort for that).
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  dashboard)
    require linkerd
    run linkerd --context "$CONTEXT" viz dashboard ;;
  traces)
    require kubectl
    say "Jaeger on http://localhost:16686 (Ctrl-C stops)"
    run kubectl --context "$CONTEXT" --namespace "$NAMESPACE" port-forward svc/jaeger-query 16686:16686 ;;
  grafana)
    require kubectl
    say "Grafana on http://localhost:3000 (Ctrl-C stops)"
    run kubectl --context "$CONTEXT" --namespace "$NAMESPACE" port-forward svc/grafana 3000:3000 ;;
  *)
    die "usage: open.sh dashboard|traces|grafana" ;;
esac
