#!/usr/bin/env bash
# Regenerates everything derived from proto/: the TypeScript stubs
# (ts-proto, nice-grpc definitions) and the FileDescriptorSet that server
# reflection serves. The output is committed; CI regenerates and fails on
# any difference (scripts/check-generated.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PATH="$PWD/node_modules/.bin:$PATH"

buf generate
# Source info is kept so that `grpcurl describe` shows the contracts' docs.
buf build -o services/contracts/descriptor/meshcart.binpb
# The chart's Linkerd objects and docs/mesh-contract.md, from proto/mesh.yaml
# (which is checked against the .proto files first).
node scripts/mesh/render.mjs
# The mesh dashboards (Linkerd proxy metrics), whose routes, canary Service,
# rate-limited Server and circuit-broken Services come from proto/mesh.yaml.
node scripts/dashboards/render.mjs
# The chart's values documentation, from the comments of values.yaml: the
# schema's descriptions and the chart README's values table.
node scripts/deploy/values-docs.mjs
