#!/usr/bin/env bash
# make -s token-cluster CUSTOMER=alice [TTL=1h]: a shopper's bearer token for
# the storefront on the kind cluster, signed with the release's own key
# (Secret storefront-jwt), minted the way make smoke mints its own, by the
# storefront's `make token` program. The token alone goes to stdout, so that
# TOKEN=$(make -s token-cluster CUSTOMER=alice) works. `make token` signs
# with make dev's demo key, which the cluster's storefront refuses.
#
#   token.sh <customer> [ttl]   ttl: seconds, or 30m, 2h, 1d (default 1h)
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$deploy_root"

customer=${1:-}
ttl=${2:-}
[[ -n $customer ]] || die "CUSTOMER is required: make -s token-cluster CUSTOMER=alice [TTL=1h]"
require kubectl node
[[ -f services/storefront/dist/mint-token.js ]] || die "services/storefront is not built: run 'make build'"
secret=$(query kubectl --context "$CONTEXT" --namespace "$NAMESPACE" get secret storefront-jwt -o 'jsonpath={.data.secret}' | base64 -d || true)
[[ -n $secret ]] || die "no Secret storefront-jwt in namespace $NAMESPACE of $CONTEXT: run 'make deploy' first"
# Reading the key and minting change nothing, so DRY_RUN=1 mints too.
STOREFRONT_JWT_SECRET=$secret exec node services/storefront/dist/mint-token.js --customer "$customer" --ttl "${ttl:-1h}"
