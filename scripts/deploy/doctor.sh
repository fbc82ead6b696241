#!/usr/bin/env bash
# make doctor: checks what `make deploy` needs on this machine and says how
# to fix each problem: the Docker daemon, what building the images needs
# (buildx; Docker 28+ with the containerd image store), the memory Docker has
# and the disk free where it keeps images, kind, kubectl, helm and the
# linkerd CLI at the pinned versions (versions.env), grpcurl and Node for
# make smoke. Exit status 1 when something required is missing; version
# mismatches are warnings.
set -euo pipefail
# shellcheck source=scripts/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# kind's node, the control plane, Linkerd and viz, then the chart (1.5 GiB of requests).
MIN_MEMORY_GIB=6
# About 6 GiB at the peak of a first deploy (docs/deploy.md, "Time and
# space"): the kind node, the images in it, the meshcart images, the build
# cache and the archive loaded into kind; the rest is headroom.
MIN_DISK_GIB=10
problems=0

ok() { printf 'ok    %s\n' "$*"; }
bad() {
  printf 'FAIL  %s\n      fix: %s\n' "$1" "$2"
  problems=$((problems + 1))
}
meh() { printf 'warn  %s\n      fix: %s\n' "$1" "$2"; }

# First dotted version number in a tool's output.
version_in() { grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n 1; }

# The version `make tools` recorded for a tool it installed (a go-built
# binary cannot always tell its own), else what the tool says.
tool_version() {
  local tool=$1 how=$2 stamp="$deploy_root/.tools/bin/.$1.version"
  if [[ "$(command -v "$tool")" == "$deploy_root/.tools/bin/$tool" && -f $stamp ]]; then
    awk '{ print $1; exit }' "$stamp"
  else
    eval "$how" 2>/dev/null | version_in || true
  fi
}

check_tool() {
  local tool=$1 want=$2 how=$3 got
  if ! command -v "$tool" >/dev/null 2>&1; then
    bad "$tool: not installed" "$(advice "$tool")"
    return 1
  fi
  got=$(tool_version "$tool" "$how")
  case $want in
    ">="*)
      if [[ -n $got ]] && at_least "$got" "${want#>=}"; then ok "$tool $got"; else meh "$tool ${got:-of unknown version}: ${want#>=} or newer is needed" "$(advice "$tool")"; fi ;;
    *)
      if [[ $got == "$want" ]]; then ok "$tool $got"; else meh "$tool ${got:-of unknown version}: $want is pinned (versions.env)" "$(advice "$tool")"; fi ;;
  esac
}

echo "make deploy needs:"
if ! command -v docker >/dev/null 2>&1; then
  bad "docker: not installed" "$(advice docker)"
elif ! docker info >/dev/null 2>&1; then
  bad "docker: the daemon is not answering" "$(advice docker-daemon)"
else
  ok "docker $(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?') (daemon up)"
  memory=$(docker info -f '{{.MemTotal}}' 2>/dev/null || echo 0)
  if [[ $memory =~ ^[0-9]+$ ]] && ((memory >= MIN_MEMORY_GIB * 1024 * 1024 * 1024 - 512 * 1024 * 1024)); then
    ok "memory for Docker: $((memory / 1024 / 1024 / 1024)) GiB"
  else
    bad "memory for Docker: $((${memory:-0} / 1024 / 1024 / 1024)) GiB, ${MIN_MEMORY_GIB} GiB needed" \
      "give Docker more memory (Docker Desktop: Settings > Resources), or close other containers; values-minimal.yaml needs less"
  fi
  if containerd_store; then
    ok "image store: containerd (images are loaded with docker save --platform + kind load image-archive)"
  fi
  build_problems=$(image_build_problems)
  if [[ -z $build_problems ]]; then
    ok "docker buildx $(query docker buildx version | version_in || echo '?') (BuildKit, for make images)"
  else
    while IFS=$'\t' read -r problem fix; do bad "$problem" "$fix"; done <<<"$build_problems"
  fi
  docker_root=$(query docker info -f '{{.DockerRootDir}}' || true)
fi
check_tool kind "$KIND_VERSION" "kind version" || true
check_tool kubectl ">=$KUBECTL_MIN_VERSION" "kubectl version --client" || true
check_tool helm "$HELM_VERSION" "helm version --short" || true
check_tool linkerd "${LINKERD_VERSION#edge-}" "linkerd version --client --short" || true
check_tool grpcurl "$GRPCURL_VERSION" "grpcurl -version" || true
check_tool node "$NODE_VERSION" "node --version" || true

# Where Docker keeps images and the kind node's disk; with Docker Desktop
# that folder is inside its VM, and its disk image grows on this machine's
# disk, so the checkout's disk is measured instead.
disk_dir=$deploy_root
if [[ -n ${docker_root:-} && -d $docker_root ]]; then disk_dir=$docker_root; fi
free_disk=$(df -Pk "$disk_dir" 2>/dev/null | awk 'NR == 2 { print int($4 / 1024 / 1024) }')
if [[ -n $free_disk ]] && ((free_disk >= MIN_DISK_GIB)); then
  ok "free disk: ${free_disk} GiB ($disk_dir)"
else
  bad "free disk: ${free_disk:-?} GiB on $disk_dir, ${MIN_DISK_GIB} GiB needed (the kind node and its images, the meshcart images, the build cache)" \
    "free some space: 'make down' removes meshcart's cluster and images; 'docker system df' shows what Docker holds, 'docker system prune' removes what is unused; on a GitHub runner, delete the preinstalled SDKs first (.github/workflows/e2e.yaml)"
fi
if [[ -r /proc/meminfo ]]; then
  available=$(awk '/^MemAvailable:/ { print int($2 / 1024 / 1024) }' /proc/meminfo)
  if ((available < MIN_MEMORY_GIB)); then
    meh "available memory: ${available} GiB, ${MIN_MEMORY_GIB} GiB recommended" "close other programs, or deploy with VALUES=helm/meshcart/values-minimal.yaml"
  else
    ok "available memory: ${available} GiB"
  fi
fi

if ((problems > 0)); then
  echo "$problems problem(s): fix them, then run make doctor again"
  exit 1
fi
echo "ready for make deploy"
