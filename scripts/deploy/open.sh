#!/usr/bin/env bash
# make dashboard | traces | grafana: opens a UI of the cluster (Ctrl-C stops).
#   dashboard  Linkerd viz on http://localhost:50750 (linkerd viz dashboard
#              opens the browser itself)
#   grafana    Grafana through the viz dashboard, on
#              http://localhost:50750/grafana/: its web server proxies
#              /grafana/... to the chart's Grafana (make mesh installs viz
#              with grafana.url), the way the dashboard's Grafana icons reach it
#   traces     Jaeger UI on http://localhost:16686/jaeger/ (a port-forward;
#              Jaeger serves under /jaeger for the viz dashboard's proxy)
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
    say "Jaeger on http://localhost:16686/jaeger/ (Ctrl-C stops)"
    run kubectl --context "$CONTEXT" --namespace "$NAMESPACE" port-forward svc/jaeger-query 16686:16686 ;;
  grafana)
    require linkerd
    say "Grafana on http://localhost:50750/grafana/, through the viz dashboard (Ctrl-C stops)"
    run linkerd --context "$CONTEXT" viz dashboard --show grafana ;;
  *)
    die "usage: open.sh dashboard|traces|grafana" ;;
esac
