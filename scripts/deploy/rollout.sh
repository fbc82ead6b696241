#!/usr/bin/env bash
# Sourced after lib.sh by the scripts that wait for the release's pods;
# never run.
#
#   run_watching_pods helm upgrade ... --wait
#
# runs the command like `run` does and, while it waits, reports which of
# the namespace's pods are not ready yet and why (image pull, crash loop,
# probe, scheduling), from the pods' status and their latest event
# (scripts/deploy/pods.mjs): first after PROGRESS_SECONDS (default 10),
# then whenever it changes, and at least once a minute. When the command
# fails, it shows the events and the last log lines of every pod that is not
# ready. Reading the cluster only; a dry run prints the command as `run` does.

# shellcheck disable=SC2154 # deploy_root, CONTEXT, NAMESPACE: set by lib.sh
PROGRESS_SECONDS=${PROGRESS_SECONDS:-10}

# The namespace's pods and events, as JSON files in $1.
snapshot_pods() {
  query kubectl --context "$CONTEXT" --namespace "$NAMESPACE" get pods -o json >"$1/pods.json" || true
  query kubectl --context "$CONTEXT" --namespace "$NAMESPACE" get events -o json >"$1/events.json" || true
}

# Runs in the background until killed, or until the script that started it
# is gone (Ctrl-C): the progress reports, on stderr.
watch_pods() {
  local dir=$1 started=$SECONDS report last="" last_at=$SECONDS elapsed
  while sleep "$PROGRESS_SECONDS"; do
    if ! kill -0 "$$" 2>/dev/null; then
      rm -rf "$dir"
      return
    fi
    snapshot_pods "$dir"
    elapsed=$(((SECONDS - started) / 60))m$(((SECONDS - started) % 60))s
    report=$(node "$deploy_root/scripts/deploy/pods.mjs" summary "$dir/pods.json" "$dir/events.json") || continue
    if [[ $report != "$last" ]] || ((SECONDS - last_at >= 60)); then
      printf '    [%s] %s\n' "$elapsed" "${report//$'\n'/$'\n'    }" >&2
      last=$report
      last_at=$SECONDS
    fi
  done
}

# After a failure: the events and recent logs of each pod that is not ready.
explain_pods() {
  local dir=$1 pod container which shown=0
  snapshot_pods "$dir"
  say "why pods of namespace $NAMESPACE are not ready"
  node "$deploy_root/scripts/deploy/pods.mjs" summary "$dir/pods.json" "$dir/events.json" | sed 's/^/    /' >&2 || true
  while read -r pod container which; do
    [[ -n $pod ]] || continue
    ((shown++ < 5)) || { note "(more pods not ready: kubectl --context $CONTEXT -n $NAMESPACE get pods)"; break; }
    say "pod $pod: events"
    node "$deploy_root/scripts/deploy/pods.mjs" events "$dir/events.json" "$pod" | sed 's/^/    /' >&2 || true
    [[ $container != - ]] || continue
    local flags=(--tail 30 -c "$container") run_of=""
    if [[ $which == previous ]]; then
      flags+=(--previous)
      run_of=" (the run before its last restart)"
    fi
    say "pod $pod: last log lines of $container$run_of"
    query kubectl --context "$CONTEXT" --namespace "$NAMESPACE" logs "$pod" "${flags[@]}" | sed 's/^/    /' >&2 || true
  done < <(node "$deploy_root/scripts/deploy/pods.mjs" failing "$dir/pods.json")
  note "more: kubectl --context $CONTEXT -n $NAMESPACE describe pod <pod>; linkerd --context $CONTEXT check --proxy -n $NAMESPACE"
}

run_watching_pods() {
  if dry_run; then
    run "$@"
    return
  fi
  local dir watcher status=0
  dir=$(mktemp -d)
  watch_pods "$dir" &
  watcher=$!
  run "$@" || status=$?
  kill "$watcher" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
  if ((status != 0)); then explain_pods "$dir"; fi
  rm -rf "$dir"
  return "$status"
}
