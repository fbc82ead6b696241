#!/usr/bin/env bash
# Shared by the scripts of `make deploy` and friends; sourced, never run.
#
# Two kinds of commands:
#   query ...   reads the cluster or the machine (what exists already?); runs
#               in every mode and changes nothing;
#   run ...     changes something; traced on stderr as "+ <command>". With
#               DRY_RUN=1 it is printed on stdout instead of run, so
#               `DRY_RUN=1 make deploy` prints exactly the commands a real
#               run would execute, one per line, ready to paste.
#   run_pipe 'producer...' -- consumer...   the same, for "a | b".
# Messages go to stderr, so that stdout of a dry run is only commands.
#
# Settings (environment): MESHCART_CLUSTER (kind cluster, default meshcart),
# MESHCART_CONTEXT (kube context, default kind-<cluster>; the API-server
# tier of make chart-test points the scripts at its own server with it),
# MESHCART_NAMESPACE (default meshcart), MESHCART_RELEASE (Helm release,
# default meshcart), VALUES (an extra values file for the chart), DRY_RUN.

deploy_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=/dev/null
source "$deploy_root/versions.env"

# Used by the scripts that source this file.
# shellcheck disable=SC2034
{
CLUSTER=${MESHCART_CLUSTER:-meshcart}
NAMESPACE=${MESHCART_NAMESPACE:-meshcart}
RELEASE=${MESHCART_RELEASE:-meshcart}
CONTEXT=${MESHCART_CONTEXT:-kind-$CLUSTER}
DRY_RUN=${DRY_RUN:-0}
# The storefront's port on the host (k8s/kind-config.yaml, chart value storefront.nodePort).
STOREFRONT_PORT=30050
}

dry_run() { [[ $DRY_RUN == 1 ]]; }

say() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# A command line as the shell would read it back.
quoted() {
  local out="" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@,+%^-]+$ ]]; then out+=" $arg"; else out+=" $(printf '%q' "$arg")"; fi
  done
  printf '%s' "${out# }"
}

run() {
  if dry_run; then
    printf '%s\n' "$(quoted "$@")"
    return 0
  fi
  printf '+ %s\n' "$(quoted "$@")" >&2
  "$@"
}

run_pipe() {
  local producer=() arg
  while [[ $# -gt 0 ]]; do
    arg=$1
    shift
    [[ $arg == -- ]] && break
    producer+=("$arg")
  done
  if dry_run; then
    printf '%s | %s\n' "$(quoted "${producer[@]}")" "$(quoted "$@")"
    return 0
  fi
  printf '+ %s | %s\n' "$(quoted "${producer[@]}")" "$(quoted "$@")" >&2
  "${producer[@]}" | "$@"
}

query() { "$@" 2>/dev/null; }

# The first 16 hex digits of the SHA-256 of stdin.
sha16() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi | cut -c1-16
}

# The tools, always aimed at the meshcart cluster, never at the current context.
k() { kubectl --context "$CONTEXT" "$@"; }

# --- what each tool is and how to get it (make doctor prints the same) --------

advice() {
  case $1 in
    docker) echo "install Docker (Docker Desktop, or Docker Engine: https://docs.docker.com/engine/install/) and start it" ;;
    docker-daemon) echo "start Docker Desktop, or 'sudo systemctl start docker'; on Linux also add yourself to the docker group" ;;
    buildx) echo "install Docker's buildx plugin: with Ubuntu's or Debian's docker.io 'sudo apt-get install docker-buildx' (where the release has it, else Docker's own packages), with Docker's packages 'sudo apt-get install docker-buildx-plugin' (https://docs.docker.com/engine/install/); Docker Desktop has it" ;;
    docker-engine) echo "update Docker to 28 or newer (docker save --platform), or turn the containerd image store off: Docker Desktop, Settings > General > 'Use containerd for pulling and storing images'; Docker Engine, \"features\": {\"containerd-snapshotter\": false} in /etc/docker/daemon.json, then restart it" ;;
    kind) echo "install kind ${KIND_VERSION}: 'go install sigs.k8s.io/kind@v${KIND_VERSION}' (then add \$(go env GOPATH)/bin to PATH), or 'brew install kind', or https://kind.sigs.k8s.io/docs/user/quick-start/#installation" ;;
    kubectl) echo "install kubectl ${KUBECTL_MIN_VERSION%.*} or newer (within one minor version of Kubernetes 1.35): 'brew install kubectl', or https://kubernetes.io/docs/tasks/tools/" ;;
    helm) echo "run 'make tools' (pinned helm ${HELM_VERSION} in .tools/bin, which make puts on PATH)" ;;
    linkerd) echo "install the linkerd CLI ${LINKERD_VERSION}: curl --proto '=https' --tlsv1.2 -sSfL https://run.linkerd.io/install-edge | LINKERD2_VERSION=${LINKERD_VERSION} sh, then add ~/.linkerd2/bin to PATH" ;;
    grpcurl) echo "run 'make tools' (pinned grpcurl ${GRPCURL_VERSION} in .tools/bin)" ;;
    node) echo "run 'make deps' (Node ${NODE_VERSION} in .tools/node)" ;;
    *) echo "install $1" ;;
  esac
}

# Stops with `make doctor`'s advice when a tool is missing.
require() {
  local tool missing=0
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      printf 'error: %s is not installed: %s\n' "$tool" "$(advice "$tool")" >&2
      missing=1
    fi
  done
  if [[ $missing -eq 1 ]]; then
    echo "('make doctor' checks everything make deploy needs)" >&2
    exit 1
  fi
}

require_docker() {
  require docker
  query docker info >/dev/null || die "the Docker daemon is not answering: $(advice docker-daemon)"
}

# Whether version $1 >= $2 (dotted numbers).
at_least() { [[ -n $1 && "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" == "$2" ]]; }

# Whether Docker keeps images in containerd (Docker Desktop's default, and
# new Docker 29 installs'): then `kind load docker-image` fails (kind issue
# 3795) and `docker save --platform` picks the node's platform.
containerd_store() {
  query docker info -f '{{json .DriverStatus}}' | grep -q 'io.containerd.snapshotter'
}

# What building and loading the images needs beyond a running daemon: one
# "problem<TAB>fix" line each; nothing when all is there (make doctor and
# make images print the same).
image_build_problems() {
  if ! query docker buildx version >/dev/null; then
    printf '%s\t%s\n' "docker buildx: not installed; the Dockerfile needs BuildKit (FROM --platform, RUN --mount)" "$(advice buildx)"
  fi
  if containerd_store; then
    local api
    api=$(query docker version -f '{{.Server.APIVersion}}' || true)
    if ! at_least "$api" 1.48; then
      printf '%s\t%s\n' "Docker Engine API ${api:-unknown} with the containerd image store: loading the images into kind needs 'docker save --platform', Docker 28 (API 1.48) or newer" "$(advice docker-engine)"
    fi
  fi
}

# release_is_current CHART_ARGS...: whether the deployed release $RELEASE
# runs exactly what `helm upgrade --install CHART_ARGS...` would install
# now. Rendered against the cluster, as the upgrade would be: --validate
# takes the cluster's Kubernetes version and APIs (without it helm assumes
# its own built-in version: v1.20 for a plain `go install` build, which the
# chart's kubeVersion refuses), and --dry-run=server lets the chart's
# lookups read the live Secrets (generated passwords). A render that fails
# stops the script with helm's own message; no release: false.
release_is_current() {
  local current desired err
  [[ "$(query helm list --namespace "$NAMESPACE" --kube-context "$CONTEXT" --deployed --short --filter "^${RELEASE}\$" || true)" == "$RELEASE" ]] ||
    return 1
  current=$(query helm get manifest "$RELEASE" --namespace "$NAMESPACE" --kube-context "$CONTEXT") || return 1
  err=$(mktemp)
  if ! desired=$(helm template "$@" --validate --dry-run=server --skip-tests 2>"$err"); then
    desired=$(cat "$err")
    rm -f "$err"
    die "helm cannot render the chart against $CONTEXT:"$'\n'"$desired"
  fi
  rm -f "$err"
  [[ -n $current && "$(grep -v '^---$' <<<"$current")" == "$(grep -v '^---$' <<<"$desired")" ]]
}

cluster_exists() {
  query kind get clusters | grep -qx "$CLUSTER"
}

# The services of the Dockerfile and their tag, a hash of the build context ("name tag" lines).
image_tags() {
  node "$deploy_root/scripts/deploy/image-tag.mjs"
}

image_ref() { echo "meshcart/$1:$2"; }

# Sets the array `chart`: the release, the chart and what this checkout
# installs (namespace, the cluster's context for `cluster`, the image tags:
# content-derived, or the version of the published IMAGES, then VALUES).
# `offline` renders go without the context: helm reads a named context even
# then, and fails while the cluster does not exist yet.
chart_arguments() {
  local tags service tag
  chart=("$RELEASE" helm/meshcart --namespace "$NAMESPACE")
  case $1 in
    cluster) chart+=(--kube-context "$CONTEXT") ;;
    offline) ;;
    *) die "chart_arguments: cluster or offline, not '$1'" ;;
  esac
  tags=$(image_tags)
  if [[ -n ${IMAGES:-} ]]; then
    chart+=(--set "image.repository=${IMAGES%:*}")
    tags=$(while read -r service _; do echo "$service ${IMAGES##*:}"; done <<<"$tags")
  fi
  while read -r service tag; do chart+=(--set "$service.image.tag=$tag"); done <<<"$tags"
  if [[ -n ${VALUES:-} ]]; then chart+=(-f "$VALUES"); fi
}

# Every meshcart image Docker holds, whatever its tag ("repository:tag" lines).
meshcart_images() {
  query docker image ls --filter 'reference=meshcart/*' --format '{{.Repository}}:{{.Tag}}' || true
}
