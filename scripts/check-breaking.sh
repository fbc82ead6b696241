#!/usr/bin/env bash
# Compares the contracts with the last released API (proto/released-api.binpb,
# a buf image committed when the API is released). A breaking change fails;
# releasing a new baseline on purpose is `make proto-release`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PATH="$PWD/node_modules/.bin:$PATH"

buf breaking --against proto/released-api.binpb
echo "no breaking change against proto/released-api.binpb"
