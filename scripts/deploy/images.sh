#!/usr/bin/env bash
# make images: builds the service images of the Dockerfile, one target each,
# all tagged with the hash of the build context (scripts/deploy/image-tag.mjs),
# and loads them into the kind node as one archive. The first target installs
# and compiles the workspace; the others reuse every layer (BuildKit's cache)
# and add only their own start command. An image already built, or already
# on the node, is skipped. Older meshcart images are removed from Docker once
# the new ones are built (BuildKit's cache rebuilds them in seconds).
#
# Loading uses `docker save` + `kind load image-archive`: `kind load
# docker-image` fails with "content digest ... not found" when Docker uses
# the containerd image store (Docker Desktop, new Docker 29 installs; kind
# issue 3795). With that store, `docker save --platform` (Docker 28+) picks
# the node's platform out of the images.
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$deploy_root"

require_docker
require kind node
problems=$(image_build_problems)
if [[ -n $problems ]]; then
  while IFS=$'\t' read -r problem fix; do printf 'error: %s\n       fix: %s\n' "$problem" "$fix" >&2; done <<<"$problems"
  die "cannot build the images ('make doctor' checks everything make deploy needs)"
fi

save_flags=()
if containerd_store; then
  save_flags=(--platform "$(query docker version -f '{{.Server.Os}}/{{.Server.Arch}}')")
fi
node_container="${CLUSTER}-control-plane"

services=()
tag=""
while read -r service service_tag; do
  services+=("$service")
  tag=$service_tag
done <<<"$(image_tags)"

say "images meshcart/{$(IFS=,; echo "${services[*]}")}:$tag"
built=0
for service in "${services[@]}"; do
  ref=$(image_ref "$service" "$tag")
  if query docker image inspect "$ref" >/dev/null; then continue; fi
  run docker buildx build --load --target "$service" --build-arg "NODE_VERSION=$NODE_VERSION" \
    --build-arg "IMAGE_VERSION=$tag" --tag "$ref" .
  built=$((built + 1))
done
if ((built == 0)); then note "built: kept"; fi

# Only this tag is needed: the ones before it are left-overs of earlier builds.
old=()
while read -r ref; do
  [[ -n $ref && $ref != *":$tag" ]] && old+=("$ref")
done < <(meshcart_images)
if ((${#old[@]} > 0)); then run docker image rm "${old[@]}"; fi

say "images on the kind node $node_container"
missing=()
for service in "${services[@]}"; do
  ref=$(image_ref "$service" "$tag")
  query docker exec "$node_container" crictl inspecti "docker.io/$ref" >/dev/null || missing+=("$ref")
done
if ((${#missing[@]} == 0)); then
  note "loaded: kept"
else
  # One archive: the images share their layers, so it holds them once.
  archive=.data/deploy/images/meshcart-$tag.tar
  run mkdir -p "$(dirname "$archive")"
  run docker save ${save_flags[@]+"${save_flags[@]}"} -o "$archive" "${missing[@]}"
  run kind load image-archive "$archive" --name "$CLUSTER"
  run rm -f "$archive"
fi
