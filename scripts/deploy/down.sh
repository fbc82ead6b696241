#!/usr/bin/env bash
# make down: deletes the kind cluster and everything in it (the images stay
# in Docker, so the next `make deploy` does not rebuild them).
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require kind
say "kind cluster $CLUSTER"
if cluster_exists; then
  run kind delete cluster --name "$CLUSTER"
else
  note "not there: nothing to delete"
fi
