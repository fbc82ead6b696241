#!/usr/bin/env bash
# make images: builds every service image of the Dockerfile, tagged by its
# content (scripts/deploy/image-tag.mjs), and loads it into the kind node.
# An image already built, or already on the node, is skipped: an unchanged
# service keeps its tag, so `helm upgrade` leaves its pods alone.
#
# Loading uses `docker save` + `kind load image-archive`: `kind load
# docker-image` fails with "content digest ... not found" when Docker uses
# the containerd image store (Docker Desktop, new Docker 29 installs; kind
# issue 3795). With that store, `docker save --platform` picks the node's
# platform out of a multi-platform image.
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$deploy_root"

require_docker
require kind node

save_flags=()
if query docker info -f '{{json .DriverStatus}}' | grep -q 'io.containerd.snapshotter'; then
  platform=$(query docker version -f '{{.Server.Os}}/{{.Server.Arch}}')
  save_flags=(--platform "$platform")
fi
node_container="${CLUSTER}-control-plane"
archives=.data/deploy/images

tags=$(image_tags)
while read -r service tag; do
  ref=$(image_ref "$service" "$tag")
  say "image $ref"
  if query docker image inspect "$ref" >/dev/null; then
    note "built: kept"
  else
    run docker build --target "$service" --build-arg "SERVICE=$service" --build-arg "NODE_VERSION=$NODE_VERSION" \
      --build-arg "IMAGE_VERSION=$tag" --tag "$ref" .
  fi
  if query docker exec "$node_container" crictl inspecti "docker.io/$ref" >/dev/null; then
    note "on the kind node: kept"
  else
    run mkdir -p "$archives"
    run docker save ${save_flags[@]+"${save_flags[@]}"} -o "$archives/$service-$tag.tar" "$ref"
    run kind load image-archive "$archives/$service-$tag.tar" --name "$CLUSTER"
    run rm -f "$archives/$service-$tag.tar"
  fi
done <<<"$tags"
