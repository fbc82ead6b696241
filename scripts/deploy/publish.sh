#!/usr/bin/env bash
# The release workflow's work (.github/workflows/release.yaml): for a version
# tag vX.Y.Z, pushes every service image of the Dockerfile, for linux/amd64
# and linux/arm64, as <REGISTRY>/meshcart/<service>:X.Y.Z, and the chart, as
# the OCI artifact <REGISTRY>/charts/meshcart:X.Y.Z whose defaults name those
# images. Then, with no build:
#
#   IMAGES=<REGISTRY>/meshcart:X.Y.Z make deploy
#   helm install meshcart oci://<REGISTRY>/charts/meshcart --version X.Y.Z ...
#
#   REGISTRY=ghcr.io/<owner> scripts/deploy/publish.sh v0.1.0
#   DRY_RUN=1 REGISTRY=... scripts/deploy/publish.sh v0.1.0   # print the pushes only
#
# The chart is packaged (into RELEASE_DIR, default .data/release) and
# checked in a dry run too: it is a local file. The images need no
# emulation: nothing in the Dockerfile runs on the target platform.
# SOURCE_URL, when set, labels the images with their repository (GitHub's
# registry links the packages to it).
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$deploy_root"

tag=${1:-}
semver='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$'
[[ $tag =~ $semver ]] || die "usage: publish.sh vX.Y.Z (a SemVer version tag; got '$tag')"
version=${tag#v}
[[ -n ${REGISTRY:-} ]] || die "REGISTRY is not set (for example REGISTRY=ghcr.io/<owner>, in lower case)"
[[ $REGISTRY =~ ^[a-z0-9][a-z0-9._:/-]*[a-z0-9]$ ]] || die "REGISTRY=$REGISTRY: a registry and path in lower case, no scheme, no trailing /"
require node helm
dry_run || require docker
repository=$REGISTRY/meshcart
out=${RELEASE_DIR:-.data/release}

services=()
while read -r service _; do services+=("$service"); done <<<"$(image_tags)"

say "images $repository/{$(IFS=,; echo "${services[*]}")}:$version (linux/amd64, linux/arm64)"
labels=()
if [[ -n ${SOURCE_URL:-} ]]; then labels=(--label "org.opencontainers.image.source=$SOURCE_URL"); fi
for service in "${services[@]}"; do
  run docker buildx build --platform linux/amd64,linux/arm64 --target "$service" \
    --build-arg "NODE_VERSION=$NODE_VERSION" --build-arg "IMAGE_VERSION=$version" ${labels[@]+"${labels[@]}"} \
    --tag "$repository/$service:$version" --push .
done

say "chart oci://$REGISTRY/charts/meshcart:$version"
rm -rf "$out"
mkdir -p "$out"
# -L: the chart's dashboards are a symlink into dashboards/.
cp -RL helm/meshcart "$out/meshcart"
values=$out/meshcart/values.yaml
# The defaults name the published images: the repository prefix, and the
# services' tags (the only empty ones: make deploy sets them from content).
[[ $(grep -c '^  repository: meshcart$' "$values") == 1 ]] || die "$values: no single '  repository: meshcart' under image:"
[[ $(grep -c '^    tag: ""$' "$values") == "${#services[@]}" ]] || die "$values: expected one empty tag per service (${#services[@]})"
sed -e "s|^  repository: meshcart\$|  repository: $repository|" -e "s|^    tag: \"\"\$|    tag: \"$version\"|" "$values" >"$values.new"
mv "$values.new" "$values"
helm package "$out/meshcart" --version "$version" --app-version "$version" --destination "$out" >/dev/null
package=$out/meshcart-$version.tgz
# What it installs with no values: exactly the images pushed above.
want=$(for service in "${services[@]}"; do echo "$repository/$service:$version"; done | sort -u)
got=$(helm template meshcart "$package" --kube-version "$KUBERNETES_SCHEMA_VERSION" |
  sed -n "s|^ *image: \"\{0,1\}\($repository/[^\":]*:[^\"]*\)\"\{0,1\}\$|\1|p" | sort -u)
[[ $got == "$want" ]] || die "the packaged chart's images are not the published ones:
$got"
note "packaged: $package (its images: $repository/<service>:$version)"
run helm push "$package" "oci://$REGISTRY/charts"
