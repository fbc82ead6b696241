#!/usr/bin/env bash
# make e2e: the whole path on a real kind cluster, as CI runs it
# (.github/workflows/e2e.yaml): doctor, deploy, smoke, then every walkthrough
# of docs/walkthroughs run from the docs themselves
# (scripts/deploy/walkthroughs.mjs), each followed by the assertion of its
# outcome, then helm test; then the cluster is deleted (KEEP_CLUSTER=1
# keeps it). Authorization is checked against proto/mesh.yaml. Needs Docker
# and the tools of make doctor; it has never been run on the machines this
# repository is written on (no Docker there).
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$deploy_root"
here=scripts/deploy
dry_run && die "make e2e runs the real thing; use DRY_RUN=1 make deploy to see the commands"

teardown() {
  local status=$?
  if [[ $status -ne 0 ]]; then
    say "e2e failed: the cluster's state, for the log"
    kubectl --context "$CONTEXT" get pods -A -o wide || true
    kubectl --context "$CONTEXT" --namespace "$NAMESPACE" get events --sort-by=.lastTimestamp | tail -n 40 || true
  fi
  stop_port_forwards 2>/dev/null || true
  if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then "$here/down.sh" || true; fi
  exit "$status"
}
trap teardown EXIT

"$here/doctor.sh"
"$here/deploy.sh"
"$here/smoke.sh"

E2E_OUT=$(mktemp -d)
export E2E_OUT
note "walkthrough outputs in $E2E_OUT"

# Node reads linkerd's and Prometheus's JSON; no jq needed. (SC2317: shellcheck
# loses track of functions first called inside pipelines.)
# shellcheck disable=SC2317
json() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const v=JSON.parse(s);$1})"; }

# PromQL against viz's Prometheus (a port-forward: it admits only viz's
# own clients through its proxy, and a port-forward skips the proxy).
PROMETHEUS_URL=http://127.0.0.1:19090
export PROMETHEUS_URL
prom_pid=""
prometheus_up() {
  [[ -z $prom_pid ]] || return 0
  kubectl --context "$CONTEXT" --namespace linkerd-viz port-forward svc/prometheus 19090:9090 >/dev/null 2>&1 &
  prom_pid=$!
  sleep 3
}
promql() {
  prometheus_up
  curl -fsS -G --data-urlencode "query=$1" "$PROMETHEUS_URL/api/v1/query" |
    json 'const r=v.data.result; console.log(r.length ? Number(r[0].value[1]) : 0)'
}
# The Grafana panel a walkthrough names (its <!-- e2e-panel: ... --> marker)
# has data: the panel's own queries, read from dashboards/meshcart-mesh.json
# (scripts/deploy/panels.mjs).
panels() {
  prometheus_up
  MESHCART_NAMESPACE=$NAMESPACE node scripts/deploy/panels.mjs "docs/walkthroughs/$1.md" ||
    die "docs/walkthroughs/$1.md: its Grafana panel (meshcart mesh) shows no data"
}
stop_port_forwards() {
  [[ -z $prom_pid ]] || kill "$prom_pid" 2>/dev/null || true
  # The dashboard walkthrough's background `linkerd viz dashboard`, if a
  # block failed before the one that stops it.
  [[ ! -f /tmp/meshcart-dashboard.pid ]] || kill "$(cat /tmp/meshcart-dashboard.pid)" 2>/dev/null || true
}

walkthrough() {
  local name=$1
  say "walkthrough: docs/walkthroughs/$name.md"
  node scripts/deploy/walkthroughs.mjs "docs/walkthroughs/$name.md" >"$E2E_OUT/$name.sh"
  (cd "$deploy_root" && bash -euo pipefail "$E2E_OUT/$name.sh")
}

walkthrough mtls
# Every line of the table ends with the SECURED mark; and the edges the
# saga needs are there.
edges=$(linkerd --context "$CONTEXT" viz edges deployment --namespace "$NAMESPACE" -o json)
unsecured=$(json 'console.log(v.filter(e=>e.no_tls_reason||!e.client_id).map(e=>e.src+">"+e.dst+" ("+e.no_tls_reason+")").join("\n"))' <<<"$edges")
[[ -z $unsecured ]] || die "edges without mTLS: $unsecured"
have=$(json 'console.log(v.map(e=>e.src+">"+e.dst).join(" "))' <<<"$edges")
for edge in storefront\>order order\>inventory order\>payment-v1 loadgen\>storefront; do
  [[ " $have " == *" $edge "* ]] || die "edge $edge not seen (seen: $have)"
done
note "$(json 'console.log(v.length)' <<<"$edges") edges, all secured"
panels mtls

# The load generator's traffic succeeds before any fault is injected: at
# least 99% of its requests of the last 2 minutes ended as they should
# (business refusals and its deliberate bad input included: loadgen's own
# list of good outcomes, services/loadgen/src/stats.ts).
ok_outcomes=$(node -e 'import("./services/loadgen/dist/stats.js").then((m) => console.log([...m.OK_OUTCOMES].join("|")))')
load_all=$(promql 'sum(increase(meshcart_loadgen_requests_total[2m]))')
load_ok=$(promql "sum(increase(meshcart_loadgen_requests_total{outcome=~\"$ok_outcomes\"}[2m]))")
note "loadgen: $load_ok of $load_all requests ended as they should"
node -e "const [ok, all] = process.argv.slice(1).map(Number); process.exit(all > 0 && ok / all >= 0.99 ? 0 : 1)" "$load_ok" "$load_all" ||
  die "loadgen's traffic is failing: $load_ok of $load_all requests ended as they should (want >= 99%)"

walkthrough authorization
grep -q "Code: PermissionDenied" "$E2E_OUT/authz-denied.out" || die "the presenter's Charge was not denied"
# Every unary RPC the contract does not grant the presenter is refused by
# the target's proxy (an empty request: the proxy decides before the service
# would validate it).
while read -r service method; do
  out=$(kubectl --context "$CONTEXT" --namespace "$NAMESPACE" exec deploy/presenter -c grpcurl -- \
    grpcurl -plaintext -d '{}' "$service:50051" "$method" 2>&1 || true)
  grep -q "Code: PermissionDenied" <<<"$out" || die "presenter -> $service $method was not denied: $out"
done < <(node scripts/mesh/contract.mjs denied presenter)
note "every RPC proto/mesh.yaml does not grant the presenter is denied"
panels authorization

walkthrough retries
faults=$(promql 'sum(increase(meshcart_faults_injected_total{method="Charge"}[2m]))')
# Charge's own GRPCRoute (one per RPC, named by proto/mesh.yaml's scheme): its retries are Charge's alone.
charge_route=$(node scripts/mesh/contract.mjs route payment Charge)
retries=$(promql "sum(increase({__name__=~\"outbound_(grpc|http)_route_retry_requests_total\",route_name=\"$charge_route\"}[2m]))")
outcomes=$(promql 'sum(increase(meshcart_order_saga_outcomes_total{outcome=~"confirmed|rejected|failed"}[2m]))')
failed=$(promql 'sum(increase(meshcart_order_saga_outcomes_total{outcome="failed"}[2m]))')
note "Charge faults $faults, retries $retries, orders $outcomes, failed $failed"
node -e "const [f,r,o,x]=process.argv.slice(1).map(Number); process.exit(f>0 && r>0 && o>0 && x/o <= 0.01 ? 0 : 1)" \
  "$faults" "$retries" "$outcomes" "$failed" || die "with 20% UNAVAILABLE on Charge: want faults > 0, retries > 0, ≥ 99% of orders not failed"
panels retries

walkthrough circuit-breaking
# breaker-pods.out is `linkerd viz stat pod --from deploy/order` (a table: NAME
# STATUS MESHED SUCCESS RPS ..., viz/cmd/stat.go at linkerd2 version-2.20):
# order's own calls to each payment pod, never the kubelet's probes or
# Prometheus's scrapes, which `stat pod` alone counts too. With --from, a pod
# order sent nothing to has no row at all: a broken pod that is fully
# ejected shows up as absent. The healthy twin must be taking the calls; the
# broken one must get less than a quarter of its twin's rate.
broken=$(cat /tmp/meshcart-broken-pod)
node -e '
const [file, broken] = process.argv.slice(1);
const lines = require("fs").readFileSync(file, "utf8").split("\n").filter((l) => /^\S/.test(l));
const headAt = lines.findIndex((l) => /^NAME\s/.test(l));
if (headAt < 0) { console.error("no stat table in " + file + ":\n" + lines.join("\n")); process.exit(1); }
const head = lines[headAt].split(/\s+/), rps = head.indexOf("RPS");
const rows = lines.slice(headAt + 1).filter((l) => l.startsWith("payment-"));
const rate = (l) => (l ? parseFloat(l.split(/\s+/)[rps]) || 0 : 0);
const bad = rows.find((l) => l.startsWith(broken + " "));
const good = rows.find((l) => !l.startsWith(broken + " ") && l.startsWith("payment-v1"));
if (!(rate(good) > 0) || !(rate(bad) < 0.25 * rate(good))) { console.error(lines.join("\n")); process.exit(1); }
console.error("order -> payment: healthy pod " + rate(good) + " rps, broken pod " + rate(bad) + " rps");
' "$E2E_OUT/breaker-pods.out" "$broken" ||
  die "the broken payment pod was not ejected: from order it still gets a quarter of its twin's calls, or the twin gets none"
panels circuit-breaking

walkthrough canary
# shellcheck source=scripts/deploy/e2e-canary.sh
source scripts/deploy/e2e-canary.sh
assert_canary
panels canary

walkthrough rate-limiting
grep -q "Code: ResourceExhausted" "$E2E_OUT/ratelimit-burst.out" || die "a 100-call burst from the host was never rate limited"
grep -q " OK$" "$E2E_OUT/ratelimit-burst.out" || die "the burst got nothing through"
panels rate-limiting

walkthrough tracing
request_id=$(grep -i '^x-request-id' "$E2E_OUT/trace-order.out" | head -n 1 | awk '{print $2}' | tr -d '\r')
[[ -n $request_id ]] || die "PlaceOrder returned no x-request-id"
# The trace is complete when the five services' own spans and their proxies'
# spans are there (fulfillment's: its handling of the order's confirmation,
# a child of order's publication, across NATS; the broker's hop is opaque
# TCP, so no proxy span stands for it), one proxy service per workload: each pod is annotated
# resource.opentelemetry.io/service.name=<workload>-proxy
# (helm/meshcart/templates/_helpers.tpl), never one shared name (the
# release's, which the injector takes from app.kubernetes.io/instance for
# every pod alike, or linkerd-proxy). Proxies export in batches: wait for them.
trace_problem() {
  local workload strays
  [[ " $services " == *" fulfillment "*" inventory "*" order "*" payment "*" storefront "* ]] ||
    { echo "the order's trace lacks services (has: $services)"; return; }
  for workload in storefront order inventory; do
    [[ " $services " == *" $workload-proxy "* ]] ||
      { echo "the order's trace has no spans of $workload's proxy (service $workload-proxy; has: $services)"; return; }
  done
  [[ " $services " =~ \ payment-v[12]-proxy\  ]] ||
    { echo "the order's trace has no spans of payment's proxy (payment-v1-proxy or payment-v2-proxy; has: $services)"; return; }
  strays=$(tr ' ' '\n' <<<"$services" | grep -vxE 'inventory|order|payment|storefront|fulfillment|loadgen|[a-z0-9-]+-proxy' || true)
  strays+=$(tr ' ' '\n' <<<"$services" | grep -x 'linkerd-proxy' || true)
  [[ -z $strays ]] || echo "the order's trace has spans under a name that is no workload's: $strays (all: $services)"
}
kubectl --context "$CONTEXT" --namespace "$NAMESPACE" port-forward svc/jaeger-query 16686:16686 >/dev/null 2>&1 &
jaeger_pid=$!
services=""
for _ in $(seq 30); do
  sleep 3
  services=$(curl -fsS -G --data-urlencode "service=storefront" --data-urlencode "tags={\"meshcart.correlation_id\":\"$request_id\"}" \
    http://127.0.0.1:16686/jaeger/api/traces 2>/dev/null |
    json 'const s=new Set(); for (const t of v.data) for (const p of Object.values(t.processes)) s.add(p.serviceName); console.log([...s].sort().join(" "))' || true)
  [[ -z $(trace_problem) ]] && break
done
kill "$jaeger_pid" 2>/dev/null || true
problem=$(trace_problem)
[[ -z $problem ]] || die "$problem"
note "one trace: $services"

walkthrough dashboard
# Every Grafana icon the viz dashboard draws for meshcart leads to a
# dashboard, and the Jaeger icon's search for order's proxy finds its traces
# once the service name is meshcart's (dashboard-links.out: "<status>
# grafana <uid>" and "<count> jaeger service=<name>" lines).
links=$E2E_OUT/dashboard-links.out
for uid in linkerd-namespace linkerd-deployment linkerd-pod linkerd-statefulset linkerd-service meshcart-mesh; do
  grep -qx "200 grafana $uid" "$links" || die "the viz dashboard's proxy does not reach Grafana's dashboard $uid: $(cat "$links")"
done
grep -qE '^[1-9][0-9]* jaeger service=order-proxy$' "$links" || die "no trace of order's proxy through the viz dashboard's Jaeger proxy: $(cat "$links")"
grep -qx '0 jaeger service=linkerd-proxy' "$links" || die "the walkthrough says the Jaeger icon's own search (service linkerd-proxy) finds nothing: $(cat "$links")"
grep -qE '^req id=\S+ proxy=in +\S+ \S+ tls=true :method=POST :authority=\S+ :path=/meshcart\.payment\.v1\.PaymentService/' "$E2E_OUT/dashboard-tap.out" ||
  die "tap showed no mTLS'd call into payment-v1: $(head -n 5 "$E2E_OUT/dashboard-tap.out")"
note "the dashboard's Grafana and Jaeger links answer; tap shows tls=true"
stop_port_forwards

say "helm test"
helm test "$RELEASE" --namespace "$NAMESPACE" --kube-context "$CONTEXT" --logs --timeout 5m

say "e2e passed"
