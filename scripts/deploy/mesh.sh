#!/usr/bin/env bash
# make mesh: on the kind cluster, in this order
#   1. the Gateway API CRDs (GATEWAY_API_VERSION, standard channel): Linkerd
#      2.19+ does not install them and refuses to install without them;
#   2. Linkerd's CRDs and control plane (LINKERD_VERSION), with the proxies
#      sending their spans to the chart's Jaeger when the chart's values
#      (values.yaml, then VALUES) install one, and not tracing otherwise;
#   3. the viz extension, whose Prometheus also scrapes the services
#      (k8s/linkerd-viz-values.yaml), with the dashboard's links to the
#      chart's Grafana (grafana.url) and Jaeger (jaegerUrl) when the chart's
#      values install them.
# Each part is skipped when it is installed with the same settings (a hash of
# them is kept as an annotation on its namespace) and upgraded when they
# changed. The CLI makes the trust anchor itself on the first install.
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$deploy_root"

require kubectl linkerd helm

# Whether the chart, as make deploy will install it (VALUES included),
# installs what templates/<file> holds: helm's own answer, so no script
# re-implements how Helm merges values files. A template that renders
# nothing is "could not find template" to `--show-only`.
chart_arguments offline
chart_installs() {
  local rendered
  if rendered=$(helm template "${chart[@]}" --show-only "templates/$1" 2>&1); then
    [[ -n $rendered ]]
  elif [[ $rendered == *"could not find template templates/$1"* ]]; then
    return 1
  else
    die "helm cannot render the chart: $rendered"
  fi
}

settings_key=meshcart/mesh-config
settings_of() { query kubectl --context "$CONTEXT" get namespace "$1" -o "jsonpath={.metadata.annotations.meshcart/mesh-config}" || true; }

# --- 1. Gateway API ------------------------------------------------------------
say "Gateway API $GATEWAY_API_VERSION CRDs"
gateway_installed=$(query kubectl --context "$CONTEXT" get crd grpcroutes.gateway.networking.k8s.io \
  -o 'jsonpath={.metadata.annotations.gateway\.networking\.k8s\.io/bundle-version}' || true)
if [[ $gateway_installed == "$GATEWAY_API_VERSION" ]]; then
  note "installed: kept"
else
  [[ -z $gateway_installed ]] || note "installed: $gateway_installed; applying $GATEWAY_API_VERSION"
  run kubectl --context "$CONTEXT" apply --server-side \
    -f "https://github.com/kubernetes-sigs/gateway-api/releases/download/${GATEWAY_API_VERSION}/standard-install.yaml"
fi

# --- 2. Linkerd control plane ---------------------------------------------------
# The proxies export spans to the chart's Jaeger and authenticate it by its
# ServiceAccount, when the values the chart is installed with have a Jaeger
# (jaeger.enabled: off in values-minimal.yaml and values-tracing-off.yaml).
# Without one, tracing is switched off explicitly: `linkerd upgrade` keeps
# the settings of the last install unless told otherwise.
jaeger=false
if chart_installs jaeger.yaml; then jaeger=true; fi
if [[ $jaeger == true ]]; then
  control_plane=(
    --set proxy.tracing.enabled=true
    --set "proxy.tracing.collector.endpoint=jaeger-collector.${NAMESPACE}.svc.cluster.local:4317"
    --set proxy.tracing.collector.meshIdentity.serviceAccountName=jaeger
    --set "proxy.tracing.collector.meshIdentity.namespace=${NAMESPACE}"
  )
else
  control_plane=(--set proxy.tracing.enabled=false)
fi
wanted=$(printf '%s\n' "$LINKERD_VERSION" "${control_plane[@]}" | sha16)
say "Linkerd $LINKERD_VERSION control plane (proxy tracing: $([[ $jaeger == true ]] && echo "to jaeger-collector.$NAMESPACE" || echo off))"
if ! query kubectl --context "$CONTEXT" get deployment linkerd-destination -n linkerd >/dev/null; then
  run linkerd --context "$CONTEXT" check --pre
  if ! query kubectl --context "$CONTEXT" get crd servers.policy.linkerd.io >/dev/null; then
    run_pipe linkerd --context "$CONTEXT" install --crds -- kubectl --context "$CONTEXT" apply -f -
  fi
  run_pipe linkerd --context "$CONTEXT" install "${control_plane[@]}" -- kubectl --context "$CONTEXT" apply -f -
  run linkerd --context "$CONTEXT" check
  run kubectl --context "$CONTEXT" annotate namespace linkerd --overwrite "$settings_key=$wanted"
elif [[ "$(settings_of linkerd)" == "$wanted" ]]; then
  note "installed with these settings: kept"
else
  note "installed with other settings or another version: upgrading (meshed pods keep their proxy's settings until they restart)"
  run_pipe linkerd --context "$CONTEXT" upgrade --crds -- kubectl --context "$CONTEXT" apply -f -
  run_pipe linkerd --context "$CONTEXT" upgrade "${control_plane[@]}" -- kubectl --context "$CONTEXT" apply -f -
  run linkerd --context "$CONTEXT" check
  run kubectl --context "$CONTEXT" annotate namespace linkerd --overwrite "$settings_key=$wanted"
fi

# --- 3. viz ---------------------------------------------------------------------
# The dashboard links each workload to its Grafana dashboard and to Jaeger:
# its web server proxies /grafana/... to grafana.url and /jaeger/... to
# jaegerUrl, both host:port (linkerd2 version-2.20, viz/charts/linkerd-viz
# templates/web.yaml and web/srv/server.go). Only what the chart installs is
# linked: a link to a Grafana that is not there would only fail.
viz_values=k8s/linkerd-viz-values.yaml
viz_links=()
if chart_installs grafana.yaml; then
  viz_links+=(--set "grafana.url=grafana.${NAMESPACE}.svc.cluster.local:3000")
fi
if [[ $jaeger == true ]]; then
  viz_links+=(--set "jaegerUrl=jaeger-query.${NAMESPACE}.svc.cluster.local:16686")
fi
wanted=$( { echo "$LINKERD_VERSION"; cat "$viz_values"; printf '%s\n' "${viz_links[@]}"; } | sha16)
links="none"
if ((${#viz_links[@]})); then links=$(printf '%s\n' "${viz_links[@]}" | grep -v '^--set$' | tr '\n' ' '); fi
say "Linkerd viz (Prometheus also scraping the services; the dashboard's links: ${links% })"
if [[ "$(settings_of linkerd-viz)" == "$wanted" ]]; then
  note "installed with these settings: kept"
else
  run_pipe linkerd --context "$CONTEXT" viz install -f "$viz_values" "${viz_links[@]}" -- kubectl --context "$CONTEXT" apply -f -
  run linkerd --context "$CONTEXT" viz check
  run kubectl --context "$CONTEXT" annotate namespace linkerd-viz --overwrite "$settings_key=$wanted"
fi
