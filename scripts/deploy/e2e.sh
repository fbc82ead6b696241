#!/usr/bin/env bash
# make e2e: the whole path on a real kind cluster, as CI runs it
# (.github/workflows/e2e.yaml): doctor, deploy, smoke, every edge between the
# meshcart workloads mTLS-secured (linkerd viz edges), the load generator's
# traffic succeeding, helm test; then the cluster is deleted (KEEP_CLUSTER=1
# keeps it). Needs Docker and the tools of make doctor; it has never been
# run on the machines this repository is written on (no Docker there).
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
  if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then "$here/down.sh" || true; fi
  exit "$status"
}
trap teardown EXIT

"$here/doctor.sh"
"$here/deploy.sh"
"$here/smoke.sh"

# Node reads linkerd's JSON; no jq needed.
json() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const v=JSON.parse(s);$1})"; }

say "every edge between the meshcart workloads is mTLS-secured"
want="storefront>order order>inventory order>payment-v1"
# The chart's load generator (on by default) calls the storefront all the
# time (inventory only when a product runs low, so that edge may not show yet).
if grep -q '^FROM runtime AS loadgen' Dockerfile; then want+=" loadgen>storefront"; fi
deadline=$((SECONDS + 120))
while :; do
  edges=$(linkerd --context "$CONTEXT" viz edges deployment --namespace "$NAMESPACE" -o json)
  have=$(json 'console.log(v.map(e=>e.src+">"+e.dst).join(" "))' <<<"$edges")
  missing=""
  for edge in $want; do [[ " $have " == *" $edge "* ]] || missing+=" $edge"; done
  [[ -n $missing && $SECONDS -lt $deadline ]] || break
  sleep 5
done
[[ -z $missing ]] || die "edges never seen:$missing (seen: $have)"
unsecured=$(json 'console.log(v.filter(e=>e.no_tls_reason||!e.client_id).map(e=>e.src+">"+e.dst+" ("+e.no_tls_reason+")").join("\n"))' <<<"$edges")
[[ -z $unsecured ]] || die "edges without mTLS: $unsecured"
note "$(json 'console.log(v.length)' <<<"$edges") edges, all secured"

if grep -q '^FROM runtime AS loadgen' Dockerfile; then
  say "the load generator's traffic succeeds"
  sleep 60
  stats=$(linkerd --context "$CONTEXT" viz stat deployment/storefront --namespace "$NAMESPACE" -o json)
  json 'const r=v[0]; if(!(Number(r.rps)>0 && Number(r.success)>=0.99)) { console.error(JSON.stringify(r)); process.exit(1) }' <<<"$stats" ||
    die "storefront under the load generator: not every call succeeded"
else
  note "no load generator in the Dockerfile yet: its traffic check starts with it"
fi

say "helm test"
helm test "$RELEASE" --namespace "$NAMESPACE" --kube-context "$CONTEXT" --logs --timeout 5m

say "e2e passed"
