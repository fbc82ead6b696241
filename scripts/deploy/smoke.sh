#!/usr/bin/env bash
# make smoke: from the host, through the NodePort kind maps to
# localhost:30050, so every call enters through storefront's Linkerd proxy:
# list the API, place an order (a demo mug, a test card), read it back
# until it is CONFIRMED, then read its details until they hold its shipment:
# fulfillment made it from the order's confirmation, which crossed NATS (the
# outbox relay's publication, the broker's opaque port, the durable
# consumer), so the whole event path of docs/events.md has worked. The shopper token is signed with the release's own
# key (Secret storefront-jwt) by the storefront's `make token` program.
#
#   SMOKE_REQUEST_ID=...  idempotency key of the order (default: smoke-<time>);
#                         the same key returns the same order.
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$deploy_root"

require grpcurl kubectl node
address=localhost:$STOREFRONT_PORT
api=meshcart.storefront.v1.StorefrontService
request_id=${SMOKE_REQUEST_ID:-smoke-$(date +%s)}

# Like run, but keeps the command's output in $captured (printed, not run,
# in a dry run).
captured=""
capture() {
  if dry_run; then
    printf '%s\n' "$(quoted "$@")"
    captured=""
    return 0
  fi
  printf '+ %s\n' "$(quoted "$@")" >&2
  captured=$("$@")
  printf '%s\n' "$captured" >&2
}

[[ -f services/storefront/dist/mint-token.js ]] || die "services/storefront is not built: run 'make build'"
secret=$(query kubectl --context "$CONTEXT" --namespace "$NAMESPACE" get secret storefront-jwt -o 'jsonpath={.data.secret}' | base64 -d || true)
[[ -n $secret ]] || die "no Secret storefront-jwt in namespace $NAMESPACE of kind-$CLUSTER: run 'make deploy' first"
token=$(STOREFRONT_JWT_SECRET=$secret node services/storefront/dist/mint-token.js --customer smoke --ttl 10m)
auth="authorization: Bearer $token"

say "the storefront's API, by reflection"
capture grpcurl -plaintext "$address" list
dry_run || grep -qx "$api" <<<"$captured" || die "storefront at $address does not offer $api"

say "place an order"
capture grpcurl -plaintext -H "$auth" \
  -d "{\"request_id\": \"$request_id\", \"items\": [{\"sku\": \"MESH-MUG\", \"quantity\": 1}], \"payment_method\": \"pm_card_visa\"}" \
  "$address" "$api/PlaceOrder"
order_id=$(grep -o 'ord_[0-9a-zA-Z]*' <<<"$captured" | head -n 1 || true)
if dry_run; then order_id='<order id from PlaceOrder>'; fi
[[ -n $order_id ]] || die "PlaceOrder answered no order id"

say "read it back until it is CONFIRMED"
# PlaceOrder waits for the outcome within its deadline, but a saga may still
# run past it (DEADLINE_EXCEEDED is an answer, not a failure): poll.
for ((attempt = 1; ; attempt++)); do
  capture grpcurl -plaintext -H "$auth" -d "{\"order_id\": \"$order_id\"}" "$address" "$api/GetOrder"
  dry_run && break
  grep -q ORDER_STATUS_CONFIRMED <<<"$captured" && break
  final=$(grep -oE 'ORDER_STATUS_(REJECTED|FAILED|CANCELLED)' <<<"$captured" | head -n 1 || true)
  [[ -z $final ]] || die "order $order_id ended $final instead of CONFIRMED"
  ((attempt < 30)) || die "order $order_id is not CONFIRMED after 30 s"
  sleep 1
done

say "read its details until they hold its shipment (fulfillment heard of the confirmation through NATS)"
for ((attempt = 1; ; attempt++)); do
  capture grpcurl -plaintext -H "$auth" -d "{\"order_id\": \"$order_id\"}" "$address" "$api/GetOrderDetails"
  dry_run && exit 0
  # shellcheck disable=SC2016 # JavaScript, not shell
  shipment=$(node -e 'const d = JSON.parse(require("fs").readFileSync(0, "utf8")); process.stdout.write(d.shipment?.status ?? "")' <<<"$captured")
  [[ -z $shipment ]] || break
  ((attempt < 30)) || die "order $order_id has no shipment after 30 s: is fulfillment consuming? (kubectl -n $NAMESPACE logs deploy/fulfillment; the outbox: meshcart_order_outbox_backlog_events on order's /metrics)"
  sleep 1
done
say "smoke test passed: order $order_id CONFIRMED through storefront's proxy, its shipment $shipment"
