#!/usr/bin/env bash
# make canary WEIGHT=n | make promote | make rollback: payment v2 beside v1,
# and the share of payment's calls it gets. The chart's GRPCRoutes of
# payment send payment.canary.weight percent of every call to payment-v2
# and the rest to payment-v1 while payment.v2.enabled is true
# (docs/walkthroughs/canary.md).
#
#   canary.sh set <0..100>   v2 deployed, <n> percent of payment's calls to it
#   canary.sh promote        every call to v2; v1 stays deployed, so that
#                            a rollback is one route change, not a rollout
#   canary.sh rollback       every call back to v1, then v2's pods removed
#
# Only these two values change: the release keeps its images and everything
# else it was installed with. --reset-then-reuse-values rather than
# --reuse-values: the latter also freezes the chart's defaults as they were
# at install, so a value a newer chart adds would be missing. Each command
# skips what is in place already; DRY_RUN=1 prints the helm commands only.
#
# The routes change the moment Helm applies them, while pods take time to
# become ready: v2 is therefore started with no share of the calls first and
# given its share once --wait saw its pods ready, and on the way back its
# share goes to 0 before its pods are removed. No call is sent to a version
# that has no ready pod.
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$deploy_root"

usage="usage: make canary WEIGHT=<0..100> | make promote | make rollback"
action=${1:-}
case $action in
  set)
    weight=${2:-}
    [[ -n $weight ]] || die "WEIGHT is required: make canary WEIGHT=10 sends 10% of payment's calls to v2 (0 to 100)"
    [[ $weight =~ ^(100|[1-9]?[0-9])$ ]] ||
      die "WEIGHT must be a whole number from 0 to 100, the percent of payment's calls sent to v2, not '$weight'"
    ;;
  promote) weight=100 ;;
  rollback) weight=0 ;;
  *) die "$usage" ;;
esac

require helm node

deployed=$(query helm list --namespace "$NAMESPACE" --kube-context "$CONTEXT" --deployed --short --filter "^${RELEASE}\$" || true)
[[ $deployed == "$RELEASE" ]] ||
  die "no deployed Helm release $RELEASE in namespace $NAMESPACE of $CONTEXT: run 'make deploy' first"

# The release's values, chart defaults included: is v2 on, and its weight.
# A chart without payment.canary.weight sends nothing to v2 by weight: 0.
values=$(query helm get values "$RELEASE" --namespace "$NAMESPACE" --kube-context "$CONTEXT" --all -o json || true)
[[ -n $values ]] || die "could not read the values of release $RELEASE (helm get values)"
current=$(node -e '
  let s = "";
  process.stdin.on("data", (d) => (s += d)).on("end", () => {
    const payment = JSON.parse(s)?.payment ?? {};
    const weight = payment.canary?.weight;
    console.log(String(payment.v2?.enabled === true), Number.isInteger(weight) ? weight : 0);
  });
' <<<"$values") || die "the values of release $RELEASE are not JSON"
read -r enabled current_weight <<<"$current"

upgrade() {
  run helm upgrade "$RELEASE" helm/meshcart --namespace "$NAMESPACE" --kube-context "$CONTEXT" \
    --reset-then-reuse-values --set "payment.v2.enabled=$1" --set "payment.canary.weight=$2" --wait --timeout 5m
}

watch_hint() {
  cat >&2 <<WATCH

Payment v2 gets $weight% of payment's calls (v1 the rest). Watch the split, per route and backend:
  linkerd --context $CONTEXT viz stat-outbound deploy/order -n $NAMESPACE
  make dashboard    the same in Linkerd viz; make grafana: the meshcart dashboard
Next:
  make canary WEIGHT=n   another share
  make promote           every call to v2 (v1 stays deployed for an instant rollback)
  make rollback          every call back to v1, and v2's pods removed
WATCH
}

case $action in
  set | promote)
    say "payment v2 at $weight% of payment's calls"
    if [[ $enabled == true && $current_weight == "$weight" ]]; then
      note "in place: kept"
    else
      if [[ $enabled != true && $weight != 0 ]]; then
        note "v2 is not deployed: its pods start first, with no calls, then get $weight%"
        upgrade true 0
      fi
      upgrade true "$weight"
    fi
    if [[ $action == promote ]]; then
      note "v1 stays deployed with no calls: 'make rollback' moves every call back to it at once"
    fi
    watch_hint
    ;;
  rollback)
    say "payment back to v1 only"
    if [[ $enabled != true && $current_weight == 0 ]]; then
      note "v2 is not deployed and gets no calls: kept"
    else
      if [[ $enabled == true && $current_weight != 0 ]]; then
        note "every call back to v1 first, then v2's pods are removed"
        upgrade true 0
      fi
      upgrade false 0
    fi
    ;;
esac
