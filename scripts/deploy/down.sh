#!/usr/bin/env bash
# make down: deletes the kind cluster (and everything in it: the images it
# pulled or was loaded with, the database volume) and the meshcart images
# `make images` built, then names what Docker still keeps for the next
# deploy and how to remove it: the build cache and the base images, which
# are shared with other projects and so are not removed unasked.
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$deploy_root"

require kind
say "kind cluster $CLUSTER"
if cluster_exists; then
  run kind delete cluster --name "$CLUSTER"
else
  note "not there: nothing to delete"
fi

if ! command -v docker >/dev/null 2>&1 || ! query docker info >/dev/null; then
  note "Docker is not answering: the meshcart images (if any) stay; run make down again with Docker running"
  exit 0
fi

say "meshcart images in Docker"
images=()
while read -r ref; do [[ -n $ref ]] && images+=("$ref"); done < <(meshcart_images)
if ((${#images[@]} > 0)); then
  run docker image rm "${images[@]}"
else
  note "none: nothing to remove"
fi
rm -rf .data/deploy/images

cat >&2 <<'LEFT'

Docker still keeps, for a quicker next make deploy (shared with other projects,
so not removed unasked; 'docker system df' shows how much):
  the build cache (the Node base image, npm's downloads, the compiled layers):
      docker builder prune --filter type=exec.cachemount   # npm's downloads only
      docker builder prune                                 # all unused build cache
  the kind node image:
      docker image rm $(docker image ls -q kindest/node)
LEFT
