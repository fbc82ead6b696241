#!/usr/bin/env bash
# Installs meshcart's pinned command-line tools into <repo>/.tools/bin.
# `make tools` calls it; CI and the make targets name only what they need.
#
#   scripts/tools.sh [tool...]   install the named tools (default: grpcurl
#                                helm kubeconform ghz shellcheck promtool
#                                nats-server; "kube" names
#                                the API-server tier's kube-apiserver,
#                                kube-controller-manager, kube-scheduler,
#                                kubectl, etcd and kwok)
#   scripts/tools.sh --print-path
#                                print the bin folder and install nothing
#
# Versions come from versions.env. Where `go` is on PATH a tool is built from
# the Go module proxy (the proxy is reachable where GitHub is not):
#   - `go install module@vX.Y.Z` for grpcurl, kubeconform, ghz, promtool
#     (without Prometheus's service discoveries), nats-server and kwok, and
#     for helm with its release's -ldflags (its version and the Kubernetes
#     version `helm template` assumes without a cluster: a plain `go install`
#     says v3.19 and Kubernetes v1.20, which the chart's kubeVersion refuses);
#   - Kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler,
#     kubectl) from a wrapper module generated here at build time, stamped
#     with the -ldflags of Kubernetes' hack/lib/version.sh; etcd from one of
#     its own (see build_kubernetes and build_etcd). A cold build of all of
#     them takes 15-20 minutes on 2 cores; the binaries are kept in the bin
#     folder, so the next run takes a second.
# Otherwise the project's release is downloaded with curl, its hash checked
# against the checksum file that release publishes, or against a pin in this
# file where none is published (shellcheck, kwok) or where an index of the
# project publishes it (the envtest archives of kube-apiserver, etcd and
# kubectl), and the binary extracted. A shellcheck already on PATH, or from
# apt-get, is preferred to a download.
#
# Environment (all optional):
#   MESHCART_TOOLS_DIR     bin folder (default <repo>/.tools/bin)
#   MESHCART_TOOLS_METHOD  go | download (default: go when go is on PATH)
#   MESHCART_TOOLS_MIRROR  base URL that replaces https://github.com,
#                          https://get.helm.sh and https://dl.k8s.io: assets
#                          are fetched from $MIRROR/github.com/...,
#                          $MIRROR/get.helm.sh/... and $MIRROR/dl.k8s.io/...
#   MESHCART_TOOLS_OS, MESHCART_TOOLS_ARCH
#                          release platform (linux|darwin, amd64|arm64);
#                          default from uname
#   MESHCART_TOOLS_SHELLCHECK_SHA256, MESHCART_TOOLS_KWOK_SHA256,
#   MESHCART_TOOLS_KWOK_STAGES_SHA256, MESHCART_TOOLS_ENVTEST_SHA512
#                          the hash of that download, for a version or
#                          platform this file has no pin for
#
# What could not be verified offline (this was written on a machine that
# reaches package registries but not GitHub, get.helm.sh or dl.k8s.io): the
# download path ran only against a local fake mirror
# (scripts/test/tools.test.sh), so these names come from the projects'
# release configurations and from public scripts that fetch the same
# versions, not from the real servers:
#   grpcurl 1.9.3   grpcurl_1.9.3_{linux,osx}_{x86_64,arm64}.tar.gz,
#                   grpcurl_1.9.3_checksums.txt
#   kubeconform     kubeconform-{linux,darwin}-{amd64,arm64}.tar.gz, CHECKSUMS
#   ghz 0.121.0     ghz-{linux,darwin}-{x86_64,arm64}.tar.gz, each with a
#                   bare-hash <asset>.sha256 (its release workflow writes
#                   them); if a release lacks it, ghz is refused rather than
#                   trusted on TLS alone: install go to build it instead
#   helm 3.19.0     get.helm.sh/helm-v3.19.0-{linux,darwin}-{amd64,arm64}.tar.gz
#                   and <asset>.sha256sum
#   ShellCheck      shellcheck-v0.10.0.{linux,darwin}.{x86_64,aarch64}.tar.xz;
#                   its SHA-256 pins below agree across independent public
#                   manifests but were not recomputed from GitHub's files
#   promtool        inside Prometheus's release archive,
#                   prometheus-3.16.0.{linux,darwin}-{amd64,arm64}.tar.gz,
#                   with sha256sums.txt (the Go module numbers Prometheus
#                   v3.X.Y as v0.3XX.Y: PROMTOOL_VERSION is the module's)
#   envtest 1.35.0  controller-tools' envtest-v1.35.0-{linux,darwin}-{amd64,arm64}.tar.gz
#                   (kube-apiserver and kubectl of Kubernetes 1.35.0, etcd
#                   3.6.6, under controller-tools/envtest/); the SHA-512 pins
#                   are those of controller-tools' envtest-releases.yaml
#   Kubernetes      dl.k8s.io/release/v1.35.0/bin/linux/{amd64,arm64}/
#                   kube-{controller-manager,scheduler} and <name>.sha256
#                   (Kubernetes publishes them for Linux only)
#   nats-server     nats-server-v2.15.3-{linux,darwin}-{amd64,arm64}.tar.gz
#                   (the binary inside a folder of the same name) and
#                   SHA256SUMS (its .goreleaser.yml at v2.15.3, read in the
#                   Go module cache)
#   kwok 0.8.0      kwok-{linux,darwin}-{amd64,arm64} (bare binaries, no
#                   checksum file) and stage-fast.yaml; their SHA-256 pins
#                   below come from one public manifest, not recomputed
# Nor was the --version output of the real release binaries (used only when
# a binary has no stamp). The go paths and the apt-get path ran for real.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# versions.env is plain KEY=VALUE lines, read through ${!var} below; not
# following it keeps shellcheck quiet from any folder, with or without -x.
# shellcheck source=/dev/null
source "$root/versions.env"

DEFAULT_TOOLS="grpcurl helm kubeconform ghz shellcheck promtool nats-server"
# make chart-test's API-server tier (scripts/deploy/apiserver-test.sh)
KUBE_TOOLS="kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok"
ALL_TOOLS="$DEFAULT_TOOLS $KUBE_TOOLS"
bin_dir=""      # where the tools go; set by main
method=""       # go | download; set by choose_method
work=""         # scratch folder inside bin_dir, removed on exit
current_tool="" # for the message of an unexpected failure
died=0
# The release being downloaded (release_asset): the file, its URL, the
# checksum file the release publishes (or empty), the hash pinned here (or
# empty), the hash's algorithm (256 or 512), and whether the file is an
# archive or the bare binary.
asset="" url="" sums_url="" pinned_hash="" hash_bits=256 bare=0
downloaded="" # the path of the verified download (download)

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
  echo "tools.sh: error: $*" >&2
  died=1
  exit 1
}

say() { echo "$*"; }

# Progress for the slow steps (a helm build takes minutes) goes to stderr,
# and only to a terminal, so that logs keep one line per tool.
progress() {
  if [[ -t 2 ]]; then echo "tools.sh: $*" >&2; fi
}

on_exit() {
  local status=$?
  if [[ -n $work ]]; then rm -rf "$work"; fi
  if [[ $status -ne 0 && $died -eq 0 ]]; then
    echo "tools.sh: error: failed while installing ${current_tool:-tools} (exit $status)" >&2
  fi
}

absolute() {
  case $1 in
    /*) echo "$1" ;;
    *) echo "$PWD/$1" ;;
  esac
}

# --- what each tool is -------------------------------------------------------

pinned_version() {
  local var
  case $1 in
    grpcurl) var=GRPCURL_VERSION ;;
    helm) var=HELM_VERSION ;;
    kubeconform) var=KUBECONFORM_VERSION ;;
    ghz) var=GHZ_VERSION ;;
    shellcheck) var=SHELLCHECK_VERSION ;;
    promtool) var=PROMTOOL_VERSION ;;
    nats-server) var=NATS_SERVER_VERSION ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) var=KUBERNETES_VERSION ;;
    etcd) var=ETCD_VERSION ;;
    kwok) var=KWOK_VERSION ;;
  esac
  echo "${!var:-}"
}

go_package() {
  case $1 in
    grpcurl) echo github.com/fullstorydev/grpcurl/cmd/grpcurl ;;
    helm) echo helm.sh/helm/v3/cmd/helm ;;
    kubeconform) echo github.com/yannh/kubeconform/cmd/kubeconform ;;
    ghz) echo github.com/bojand/ghz/cmd/ghz ;;
    promtool) echo github.com/prometheus/prometheus/cmd/promtool ;;
    # The module's root is the server's main package; go names the binary
    # nats-server (the /v2 suffix is dropped).
    nats-server) echo github.com/nats-io/nats-server/v2 ;;
    kwok) echo sigs.k8s.io/kwok/cmd/kwok ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) echo "k8s.io/kubernetes/cmd/$1" ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
  esac
}

# The arguments that make each tool print its version.
version_args() {
  case $1 in
    grpcurl) echo -version ;;
    helm) echo "version --short" ;;
    kubeconform) echo -v ;;
    kubectl) echo "version --client" ;;
    ghz | shellcheck | promtool | nats-server | kwok | etcd | kube-apiserver | kube-controller-manager | kube-scheduler) echo --version ;;
  esac
}

# Tools whose own version output is what matters (helm and kubectl compare
# a chart's kubeVersion with it; the API-server tier prints it): accepted
# only when they report exactly the pinned version, whatever their stamp
# says, so that a helm built before its version was stamped is rebuilt.
reports_own_version() {
  case $1 in
    helm | kube-apiserver | kube-controller-manager | kube-scheduler | kubectl | etcd) return 0 ;;
    *) return 1 ;;
  esac
}

is_known_tool() {
  case " $ALL_TOOLS " in
    *" $1 "*) return 0 ;;
    *) return 1 ;;
  esac
}

# --- is the pinned version already there? -----------------------------------

# file_hash FILE [256|512]
file_hash() {
  local bits=${2:-256}
  if command -v "sha${bits}sum" >/dev/null 2>&1; then
    "sha${bits}sum" "$1" | awk '{ print tolower($1) }'
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a "$bits" "$1" | awk '{ print tolower($1) }'
  else
    return 1
  fi
}

file_sha256() { file_hash "$1" 256; }

stamp_file() { echo "$bin_dir/.$1.version"; }

# The stamp holds "<version> <sha256 of the binary>": a binary that was
# replaced behind our back no longer matches its stamp.
write_stamp() {
  local tool=$1 version=$2 sum
  sum=$(file_sha256 "$bin_dir/$tool") || return 0
  echo "$version $sum" >"$(stamp_file "$tool")"
}

stamp_matches() {
  local tool=$1 version=$2 stamp sum
  stamp=$(stamp_file "$tool")
  [[ -f $stamp ]] || return 1
  sum=$(file_sha256 "$bin_dir/$tool") || return 1
  [[ "$(cat "$stamp")" == "$version $sum" ]]
}

# Go binaries carry the module version they were built from; this is the
# reliable check for `go install` builds, whose --version output says
# "dev build" (grpcurl), "dev" (ghz), "development" (kubeconform) or "v3.19"
# (helm), because those projects set the version with -ldflags at release.
buildinfo_version() {
  local bin=$1 pkg=$2
  [[ -n $pkg ]] && command -v go >/dev/null 2>&1 || return 0
  go version -m "$bin" 2>/dev/null | awk -v pkg="$pkg" '
    $1 == "path" { path = $2 }
    $1 == "mod" && mod == "" { mod = $3 }
    END { if (path == pkg) { sub(/^v/, "", mod); print mod } }'
}

# Release binaries print their version; accept the output if one of its
# words (split on anything but digits and dots) is exactly the version.
reports_version() {
  local tool=$1 version=$2 out
  # shellcheck disable=SC2046 # the arguments are meant to be split
  out=$("$bin_dir/$tool" $(version_args "$tool") </dev/null 2>&1) || true
  printf '%s\n' "$out" | tr -c '0-9.\n' '\n' | grep -xF -- "$version" >/dev/null
}

has_pinned_version() {
  local tool=$1 version=$2 bin="$bin_dir/$1"
  [[ -f $bin && -x $bin ]] || return 1
  if reports_own_version "$tool"; then
    reports_version "$tool" "$version"
    return
  fi
  stamp_matches "$tool" "$version" && return 0
  [[ "$(buildinfo_version "$bin" "$(go_package "$tool")")" == "$version" ]] && return 0
  reports_version "$tool" "$version"
}

# --- building with go --------------------------------------------------------

# go_mod_field MODULE@VERSION FIELD: a field (GoMod, Info, Dir) of
# `go mod download -json`, i.e. a file or folder in the module cache.
go_mod_field() {
  local json
  json=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$1" 2>&1) ||
    { printf '%s\n' "$json" | tail -n 5 >&2; die "go mod download $1 failed"; }
  printf '%s\n' "$json" | sed -n "s/^[[:space:]]*\"$2\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n 1
}

# go_build DIR LOG ARGS...: `go build ARGS` inside the module DIR.
go_build() {
  local dir=$1 log=$2
  shift 2
  if ! (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath "$@") >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "go build $* failed (log above)"
  fi
}

# helm's Makefile stamps its version and the Kubernetes version that
# `helm template` assumes without a cluster (that of the client-go it is
# built with); a plain `go install` leaves "v3.19" and Kubernetes v1.20
# (pkg/chartutil/capabilities.go), and `helm template` then refuses a chart
# whose kubeVersion wants more.
helm_ldflags() {
  local version=$1 gomod client_go major minor
  gomod=$(go_mod_field "helm.sh/helm/v3@v$version" GoMod)
  client_go=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")
  [[ $client_go =~ ^v0\.([0-9]+)\. ]] || die "cannot read the client-go version from helm's go.mod ($gomod)"
  major=1 minor=${BASH_REMATCH[1]}
  echo "-s -w -X helm.sh/helm/v3/internal/version.version=v$version" \
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
}

# `go install k8s.io/kubernetes/cmd/...@v1.35.0` is refused: that go.mod
# replaces its staging modules (k8s.io/api, client-go, ...) with folders of
# its own repository. This writes a wrapper module that requires
# k8s.io/kubernetes and, for every staging module it requires (read from its
# go.mod: 29 at 1.35), requires and replaces it with the published
# v0.<minor>.<patch>; the staging modules that are only replaced, never
# required (two samples), are left out. Its go and godebug lines are those
# of Kubernetes' go.mod. Generated at build time, in the scratch folder.
kube_module=""
kubernetes_module() {
  local v=$KUBERNETES_VERSION gomod staged m dir="$work/kubernetes-module"
  if [[ -n $kube_module ]]; then return 0; fi
  gomod=$(go_mod_file_of "k8s.io/kubernetes@v$v")
  staged=$(awk '
    /^require \(/ { inreq = 1; next }
    /^replace \(/ { inrep = 1; next }
    /^\)/ { inreq = 0; inrep = 0; next }
    inreq && $1 ~ /^k8s\.io\// { required[$1] = 1 }
    inrep && $2 == "=>" && $3 ~ /^\.\/staging\// { staged[$1] = 1 }
    END { for (m in staged) if (m in required) print m }' "$gomod" | sort)
  [[ -n $staged ]] || die "found no staging modules in $gomod"
  mkdir -p "$dir"
  {
    echo "// Generated by scripts/tools.sh to build Kubernetes $v; never committed."
    echo "module meshcart.local/kubernetes-build"
    echo
    grep -E '^(go|godebug) ' "$gomod"
    echo
    echo "require k8s.io/kubernetes v$v"
    echo
    echo "require ("
    for m in $staged; do printf '\t%s v0.%s\n' "$m" "${v#*.}"; done
    echo ")"
    echo
    echo "replace ("
    for m in $staged; do printf '\t%s => %s v0.%s\n' "$m" "$m" "${v#*.}"; done
    echo ")"
  } >"$dir/go.mod"
  kube_module=$dir
}

go_mod_file_of() {
  local file
  file=$(go_mod_field "$1" GoMod)
  [[ -f $file ]] || die "go mod download $1 gave no go.mod"
  echo "$file"
}

# The -X flags of Kubernetes' hack/lib/version.sh, on both version packages:
# without them the binaries say v0.0.0-master, and helm refuses a chart with
# a kubeVersion against such a server.
kubernetes_ldflags() {
  local v=$KUBERNETES_VERSION major minor date pkg flags="-s -w" info
  major=${v%%.*}
  minor=${v#*.}
  minor=${minor%%.*}
  info=$(go_mod_field "k8s.io/kubernetes@v$v" Info)
  date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    flags+=" -X $pkg.gitVersion=v$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    if [[ -n $date ]]; then flags+=" -X $pkg.buildDate=$date"; fi
  done
  echo "$flags"
}

build_kubernetes() {
  local tool=$1 stage=$2
  kubernetes_module
  go_build "$kube_module" "$stage/go.log" -ldflags "$(kubernetes_ldflags)" -o "$stage/$tool" "$(go_package "$tool")"
}

# etcd's server module is the etcd binary's main package, but its go.mod
# replaces its sibling modules with folders too: a wrapper of its own (not
# the Kubernetes one, whose requirements would move etcd's dependencies).
build_etcd() {
  local stage=$1 dir="$work/etcd-module" gomod
  gomod=$(go_mod_file_of "go.etcd.io/etcd/server/v3@v$ETCD_VERSION")
  mkdir -p "$dir"
  {
    echo "// Generated by scripts/tools.sh to build etcd $ETCD_VERSION; never committed."
    echo "module meshcart.local/etcd-build"
    echo
    grep -E '^go ' "$gomod"
    echo
    echo "require go.etcd.io/etcd/server/v3 v$ETCD_VERSION"
  } >"$dir/go.mod"
  go_build "$dir" "$stage/go.log" -ldflags "-s -w" -o "$stage/etcd" "$(go_package etcd)"
}

# Build tags of a tool: promtool without Prometheus's service discoveries
# (cloud SDKs it does not need to lint metrics), which halves its build.
go_tags() {
  case $1 in
    promtool) echo remove_all_sd ;;
  esac
}

install_with_go() {
  local tool=$1 version=$2 stage=$3 pkg ldflags=""
  pkg=$(go_package "$tool")
  progress "building $tool $version with go (may take minutes) ..."
  case $tool in
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) build_kubernetes "$tool" "$stage" ;;
    etcd) build_etcd "$stage" ;;
    *)
      if [[ $tool == helm ]]; then ldflags=$(helm_ldflags "$version"); fi
      if ! GOBIN="$stage" go install -tags "$(go_tags "$tool")" ${ldflags:+-ldflags "$ldflags"} "$pkg@v$version" >"$stage/go.log" 2>&1; then
        tail -n 20 "$stage/go.log" >&2
        die "go install $pkg@v$version failed (log above)"
      fi
      ;;
  esac
  [[ -f $stage/$tool ]] || die "building $pkg $version produced no $tool"
}

# --- downloading a release ---------------------------------------------------

platform_os() {
  local os=${MESHCART_TOOLS_OS:-}
  if [[ -z $os ]]; then os=$(uname -s | tr '[:upper:]' '[:lower:]'); fi
  case $os in
    linux | darwin) echo "$os" ;;
    *) return 1 ;;
  esac
}

platform_arch() {
  local arch=${MESHCART_TOOLS_ARCH:-}
  if [[ -z $arch ]]; then arch=$(uname -m); fi
  case $arch in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) return 1 ;;
  esac
}

github_base() {
  if [[ -n ${MESHCART_TOOLS_MIRROR:-} ]]; then
    echo "${MESHCART_TOOLS_MIRROR%/}/github.com"
  else
    echo https://github.com
  fi
}

helm_base() {
  if [[ -n ${MESHCART_TOOLS_MIRROR:-} ]]; then
    echo "${MESHCART_TOOLS_MIRROR%/}/get.helm.sh"
  else
    echo https://get.helm.sh
  fi
}

k8s_base() {
  if [[ -n ${MESHCART_TOOLS_MIRROR:-} ]]; then
    echo "${MESHCART_TOOLS_MIRROR%/}/dl.k8s.io"
  else
    echo https://dl.k8s.io
  fi
}

# Sets asset (file name), url, sums_url (the checksum file the release
# publishes), pinned_hash (where the hash is pinned here instead), hash_bits
# and bare (1: the asset is the binary itself, not an archive). Each project
# names its platforms its own way, hence the mapping. Fails (status 1) for a
# tool that has no release for the platform.
release_asset() {
  local tool=$1 v=$2 os=$3 arch=$4 gh x86 osx rel
  gh=$(github_base)
  x86=$arch
  if [[ $arch == amd64 ]]; then x86=x86_64; fi
  osx=$os
  if [[ $os == darwin ]]; then osx=osx; fi
  sums_url="" pinned_hash="" hash_bits=256 bare=0
  case $tool in
    grpcurl) # goreleaser; darwin is "osx", amd64 is "x86_64"
      asset="grpcurl_${v}_${osx}_${x86}.tar.gz"
      url="$gh/fullstorydev/grpcurl/releases/download/v$v/$asset"
      sums_url="$gh/fullstorydev/grpcurl/releases/download/v$v/grpcurl_${v}_checksums.txt" ;;
    kubeconform) # goreleaser; one CHECKSUMS file per release
      asset="kubeconform-$os-$arch.tar.gz"
      url="$gh/yannh/kubeconform/releases/download/v$v/$asset"
      sums_url="$gh/yannh/kubeconform/releases/download/v$v/CHECKSUMS" ;;
    ghz) # release workflow; a bare "<asset>.sha256" file per archive
      asset="ghz-$os-$x86.tar.gz"
      url="$gh/bojand/ghz/releases/download/v$v/$asset"
      sums_url="$url.sha256" ;;
    helm) # get.helm.sh; "<asset>.sha256sum" holds "<hash>  <asset>"
      asset="helm-v$v-$os-$arch.tar.gz"
      url="$(helm_base)/$asset"
      sums_url="$url.sha256sum" ;;
    shellcheck) # no checksum file is published: pinned below
      if [[ $arch == arm64 ]]; then x86=aarch64; fi
      asset="shellcheck-v$v.$os.$x86.tar.xz"
      url="$gh/koalaman/shellcheck/releases/download/v$v/$asset"
      pinned_hash=$(pinned_download_hash "$asset") ;;
    promtool) # in the Prometheus release; module v0.3XX.Y is release 3.XX.Y
      rel=${v#0.}
      rel="$((${rel%%.*} / 100)).$((${rel%%.*} % 100)).${v##*.}"
      asset="prometheus-$rel.$os-$arch.tar.gz"
      url="$gh/prometheus/prometheus/releases/download/v$rel/$asset"
      sums_url="$gh/prometheus/prometheus/releases/download/v$rel/sha256sums.txt" ;;
    nats-server) # goreleaser, wrapped in a folder; one SHA256SUMS per release
      asset="nats-server-v$v-$os-$arch.tar.gz"
      url="$gh/nats-io/nats-server/releases/download/v$v/$asset"
      sums_url="$gh/nats-io/nats-server/releases/download/v$v/SHA256SUMS" ;;
    kube-apiserver | kubectl | etcd)
      # controller-tools' envtest archive: kube-apiserver and kubectl of
      # dl.k8s.io, etcd of etcd's release (its hack/envtest Dockerfile), one
      # archive for the three; SHA-512 pinned from its envtest-releases.yaml.
      asset="envtest-v$KUBERNETES_VERSION-$os-$arch.tar.gz"
      url="$gh/kubernetes-sigs/controller-tools/releases/download/envtest-v$KUBERNETES_VERSION/$asset"
      hash_bits=512
      pinned_hash=$(pinned_download_hash "$asset") ;;
    kube-controller-manager | kube-scheduler) # dl.k8s.io; "<name>.sha256" holds the bare hash
      [[ $os == linux ]] || return 1
      asset=$tool bare=1
      url="$(k8s_base)/release/v$v/bin/$os/$arch/$tool"
      sums_url="$url.sha256" ;;
    kwok) # bare binaries, no checksum file: pinned below
      asset="kwok-$os-$arch" bare=1
      url="$gh/kubernetes-sigs/kwok/releases/download/v$v/$asset"
      pinned_hash=$(pinned_download_hash "$asset") ;;
    kwok-stages) # kwok's fast node and pod stages, as released
      asset=stage-fast.yaml bare=1
      url="$gh/kubernetes-sigs/kwok/releases/download/v$v/$asset"
      pinned_hash=$(pinned_download_hash "$asset") ;;
  esac
}

# Hashes of downloads whose release publishes no checksum file (shellcheck,
# kwok) or publishes it in an index of the project (envtest), pinned here;
# an environment variable gives one this file lacks. Bumping a version
# needs new pins.
#   ShellCheck: from several independent public manifests that agree; not
#     recomputed offline.
#   envtest: controller-tools' envtest-releases.yaml (v1.35.0 entries).
#   kwok: from public manifests that installed kwok v0.8.0 with these pins
#     (the binaries: one; stage-fast.yaml: two that agree); not recomputed
#     offline. Other platforms: MESHCART_TOOLS_KWOK_SHA256, or go.
pinned_download_hash() {
  local override=""
  case $1 in
    shellcheck-*) override=${MESHCART_TOOLS_SHELLCHECK_SHA256:-} ;;
    envtest-*) override=${MESHCART_TOOLS_ENVTEST_SHA512:-} ;;
    kwok-*) override=${MESHCART_TOOLS_KWOK_SHA256:-} ;;
    stage-fast.yaml) override=${MESHCART_TOOLS_KWOK_STAGES_SHA256:-} ;;
  esac
  if [[ -n $override ]]; then
    echo "$override" | tr '[:upper:]' '[:lower:]'
    return 0
  fi
  case "$1" in
    shellcheck-v0.10.0.linux.x86_64.tar.xz) echo 6c881ab0698e4e6ea235245f22832860544f17ba386442fe7e9d629f8cbedf87 ;;
    shellcheck-v0.10.0.linux.aarch64.tar.xz) echo 324a7e89de8fa2aed0d0c28f3dab59cf84c6d74264022c00c22af665ed1a09bb ;;
    shellcheck-v0.10.0.darwin.x86_64.tar.xz) echo ef27684f23279d112d8ad84e0823642e43f838993bbb8c0963db9b58a90464c2 ;;
    shellcheck-v0.10.0.darwin.aarch64.tar.xz) echo bbd2f14826328eee7679da7221f2bc3afb011f6a928b848c80c321f6046ddf81 ;;
    envtest-v1.35.0-linux-amd64.tar.gz) echo 130369c16f076e724d089189afaede960316f5f5dea6cf57be7a4fc6f09c77342893192509790e4056e116e232dff832ed863f5bd55dcb55d38f3ab834828a11 ;;
    envtest-v1.35.0-linux-arm64.tar.gz) echo e53e2b88398f5b9503e3f074d82a2dcb090c708b34940848607ce658138a5d4a25962e042ab683ccc026a8a6c90c0be7f658e42dde0887369d73c3b68e2fc86c ;;
    envtest-v1.35.0-darwin-amd64.tar.gz) echo fccc583ba6d322c88a8c56f7876090a7ad63460046a4bcae414093b23ce68a75f172ca7484b7c7475b707657eca5108a8ad3fd85e1b4f70a6c99ca2f22dbd6b2 ;;
    envtest-v1.35.0-darwin-arm64.tar.gz) echo bb5d0bb3975956331b0aa0c039955b4c4dc6c5c288e5af369364c7d2fbeac11a025227dabb127569080b259dd29b697cc77fa77abd27ae26721ddb23e8ee0613 ;;
    kwok-linux-amd64) [[ $KWOK_VERSION == 0.8.0 ]] && echo f5a4385a2ae1b9dd7f8acae18e002a75c0ebba124ae9d7259aa8dadb50711f46 ;;
    kwok-darwin-arm64) [[ $KWOK_VERSION == 0.8.0 ]] && echo 69a064ec98d37844d9d742b5b28ff57825659a983ccc3e208daa6948b94d64ba ;;
    stage-fast.yaml) [[ $KWOK_VERSION == 0.8.0 ]] && echo 2f28d95564ec43056c0873f7a25ac7d2a5bba4c8496c72f8b3ee73fd4f54ee24 ;;
  esac
  return 0
}

fetch() {
  curl -fsSL --retry 3 --connect-timeout 30 -o "$2" "$1"
}

# Reads a checksum file in either published shape: "<hash>  <name>" lines
# (sha256sum, goreleaser) or a single bare hash (ghz's *.sha256, dl.k8s.io).
expected_hash() {
  local sums=$1 asset=$2 bits=$3
  awk -v asset="$asset" -v len=$((bits / 4)) '
    NF >= 2 { name = $2; sub(/^\*/, "", name); sub(/^\.\//, "", name)
              if (name == asset && found == "") found = $1 }
    NF == 1 { bare = $1; bares++ }
    END { if (found == "" && bares == 1 && NR == 1) found = bare
          if (length(found) == len && found ~ /^[0-9a-fA-F]+$/) print tolower(found) }' "$sums"
}

# The expected hash of the download, from the release's checksum file or the
# pin; a download without one is never installed.
verify_archive() {
  local tool=$1 archive=$2 stage=$3 expected actual
  if [[ -n $sums_url ]]; then
    fetch "$sums_url" "$stage/sums" ||
      die "cannot fetch the checksum file $sums_url; refusing to install $tool unverified (with go on PATH it is built from the Go module proxy instead)"
    expected=$(expected_hash "$stage/sums" "$asset" "$hash_bits")
  else
    expected=$pinned_hash
  fi
  [[ -n $expected ]] || die "no SHA-$hash_bits for $asset (checked ${sums_url:-the pins in scripts/tools.sh}); refusing to install $tool (with go on PATH it is built from the Go module proxy instead)"
  actual=$(file_hash "$archive" "$hash_bits") || die "need sha${hash_bits}sum or shasum to verify downloads"
  [[ $actual == "$expected" ]] ||
    die "checksum mismatch for $asset: expected $expected, got $actual; refusing to install $tool"
}

# Finds the archive member whose base name is the tool (helm keeps it in
# "<os>-<arch>/", shellcheck in "shellcheck-vX/", nats-server in
# "nats-server-vX-<os>-<arch>/", envtest in
# "controller-tools/envtest/", the others at the top).
archive_member() {
  tar -tf "$1" | awk -v name="$2" '
    { n = split($0, part, "/") }
    part[n] == name && !seen { print; seen = 1 }'
}

extract_binary() {
  local tool=$1 archive=$2 stage=$3 member
  member=$(archive_member "$archive" "$tool") || die "cannot list $asset"
  [[ -n $member ]] || die "$asset contains no $tool"
  case $member in
    /* | *..*) die "$asset: refusing unsafe member path $member" ;;
  esac
  mkdir "$stage/x"
  tar -xf "$archive" -C "$stage/x" "$member" || die "cannot extract $member from $asset"
  [[ -f $stage/x/$member && ! -L $stage/x/$member ]] || die "$asset: $member is not a regular file"
  mv "$stage/x/$member" "$stage/$tool"
}

# download TOOL VERSION STAGE: sets downloaded to the verified asset of TOOL
# (and the globals of release_asset). One
# asset may serve several tools (the envtest archive): verified downloads
# are kept in the scratch folder for the rest of the run.
download() {
  local tool=$1 version=$2 stage=$3 os arch kept
  os=$(platform_os) || die "no $tool release for OS $(uname -s); install go (https://go.dev/dl/) and run again"
  arch=$(platform_arch) || die "no $tool release for CPU $(uname -m); install go (https://go.dev/dl/) and run again"
  release_asset "$tool" "$version" "$os" "$arch" ||
    die "$tool publishes no release for $os/$arch; install go (https://go.dev/dl/) to build it, and run again"
  [[ -n $sums_url || -n $pinned_hash ]] ||
    die "no SHA-$hash_bits for $asset (checked the pins in scripts/tools.sh); refusing to install $tool (with go on PATH it is built from the Go module proxy instead)"
  kept="$work/downloads/$asset"
  if [[ ! -f $kept ]]; then
    progress "downloading $url ..."
    fetch "$url" "$stage/$asset" || die "download failed: $url"
    verify_archive "$tool" "$stage/$asset" "$stage"
    mkdir -p "$work/downloads"
    mv "$stage/$asset" "$kept"
  fi
  downloaded=$kept
}

install_from_release() {
  local tool=$1 version=$2 stage=$3
  download "$tool" "$version" "$stage"
  if [[ $bare -eq 1 ]]; then
    cp "$downloaded" "$stage/$tool"
  else
    extract_binary "$tool" "$downloaded" "$stage"
  fi
}

# --- installing --------------------------------------------------------------

# Builds or downloads into a private folder next to the bin folder, then
# renames into place, so a failed run never leaves a partial binary.
install_binary() {
  local tool=$1 version=$2 how=$3 stage
  stage=$(mktemp -d "$work/$tool.XXXXXX")
  if [[ $how == go ]]; then
    install_with_go "$tool" "$version" "$stage"
  else
    install_from_release "$tool" "$version" "$stage"
  fi
  chmod 755 "$stage/$tool"
  rm -f "$(stamp_file "$tool")"
  mv -f "$stage/$tool" "$bin_dir/$tool"
  write_stamp "$tool" "$version"
}

install_go_tool() {
  local tool=$1 version note="" how started
  version=$(pinned_version "$tool")
  if has_pinned_version "$tool" "$version" && extras_present "$tool" "$version"; then
    write_stamp "$tool" "$version"
    say "$tool $version already present"
    return 0
  fi
  if [[ -e $bin_dir/$tool || -L $bin_dir/$tool ]]; then note=", replaced another version"; fi
  started=$SECONDS
  install_binary "$tool" "$version" "$method"
  if reports_own_version "$tool" && ! reports_version "$tool" "$version"; then
    rm -f "$bin_dir/$tool" "$(stamp_file "$tool")"
    # shellcheck disable=SC2046 # the arguments are meant to be split
    die "the $tool just installed does not report version $version: $("$bin_dir/$tool" $(version_args "$tool") 2>&1 | head -n 1)"
  fi
  install_extras "$tool" "$version"
  how="go install"
  case $tool in
    kube-* | kubectl | etcd) how="go build" ;;
  esac
  if [[ $method == go ]]; then
    how+=", $((SECONDS - started))s"
  else
    how="download, sha${hash_bits} verified"
  fi
  say "$tool $version installed ($how$note)"
}

# What a tool needs beside its binary: kwok, its fast node and pod stages
# (node-initialize, node-heartbeat-with-lease, pod-ready, pod-complete,
# pod-delete), without which it changes nothing. They ship in kwok's module
# (kustomize/stage/) and as the release asset stage-fast.yaml; installed as
# <bin>/kwok-stages.yaml, whose first line names the version.
kwok_stages_file() { echo "$bin_dir/kwok-stages.yaml"; }

extras_present() {
  local tool=$1 version=$2
  case $tool in
    kwok) [[ "$(head -n 1 "$(kwok_stages_file)" 2>/dev/null)" == "# kwok $version fast stages"* ]] ;;
    *) return 0 ;;
  esac
}

install_extras() {
  local tool=$1 version=$2 stage dir part
  [[ $tool == kwok ]] || return 0
  stage=$(mktemp -d "$work/kwok-stages.XXXXXX")
  if [[ $method == go ]]; then
    dir=$(go_mod_field "sigs.k8s.io/kwok@v$version" Dir)
    echo "# kwok $version fast stages (from its module, kustomize/stage/)" >"$stage/stages.yaml"
    for part in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      [[ -f $dir/kustomize/stage/$part ]] || die "kwok $version has no kustomize/stage/$part"
      { echo "---"; cat "$dir/kustomize/stage/$part"; } >>"$stage/stages.yaml"
    done
  else
    download kwok-stages "$version" "$stage"
    { echo "# kwok $version fast stages (its release's stage-fast.yaml)"; cat "$downloaded"; } >"$stage/stages.yaml"
  fi
  mv -f "$stage/stages.yaml" "$(kwok_stages_file)"
}

# --- shellcheck: PATH, then apt-get, then the pinned release ---------------

shellcheck_version_of() {
  "$1" --version 2>/dev/null | awk '$1 == "version:" { print $2 }'
}

# A shellcheck on PATH other than the one in the bin folder.
system_shellcheck() {
  local dir IFS=:
  for dir in $PATH; do
    [[ -n $dir && -f $dir/shellcheck && -x $dir/shellcheck ]] || continue
    [[ "$(cd "$dir" && pwd -P)" != "$bin_dir" ]] || continue
    echo "$dir/shellcheck"
    return 0
  done
  return 1
}

apt_install_shellcheck() {
  local log="$work/apt.log"
  [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1 || return 1
  progress "installing shellcheck with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq shellcheck >"$log" 2>&1 && return 0
  # A fresh container has no package lists yet.
  apt-get update -qq >>"$log" 2>&1 || true
  apt-get install -y -qq shellcheck >>"$log" 2>&1 && return 0
  tail -n 5 "$log" >&2
  echo "tools.sh: apt-get install shellcheck failed; downloading the release instead" >&2
  return 1
}

link_shellcheck() {
  local target=$1 how=$2
  rm -f "$bin_dir/shellcheck" "$(stamp_file shellcheck)"
  ln -s "$target" "$bin_dir/shellcheck"
  say "shellcheck $(shellcheck_version_of "$target") $how ($target)"
}

install_shellcheck() {
  local version bin="$bin_dir/shellcheck" sys
  version=$(pinned_version shellcheck)
  if [[ -L $bin && -n "$(shellcheck_version_of "$bin")" ]]; then
    say "shellcheck $(shellcheck_version_of "$bin") already present ($(cd "$bin_dir" && readlink shellcheck))"
    return 0
  fi
  if [[ ! -L $bin ]] && has_pinned_version shellcheck "$version"; then
    write_stamp shellcheck "$version"
    say "shellcheck $version already present"
    return 0
  fi
  if sys=$(system_shellcheck); then
    link_shellcheck "$sys" "already present"
    return 0
  fi
  if apt_install_shellcheck && sys=$(system_shellcheck); then
    link_shellcheck "$sys" "installed (apt-get)"
    return 0
  fi
  rm -f "$bin"
  install_binary shellcheck "$version" download
  say "shellcheck $version installed (download, sha256 verified)"
}

# --- main --------------------------------------------------------------------

choose_method() {
  method=${MESHCART_TOOLS_METHOD:-}
  if [[ -z $method ]]; then
    if command -v go >/dev/null 2>&1; then method=go; else method=download; fi
  fi
  case $method in
    go) command -v go >/dev/null 2>&1 || die "MESHCART_TOOLS_METHOD=go but go is not on PATH" ;;
    download) command -v curl >/dev/null 2>&1 || die "neither go nor curl is on PATH; install one of them" ;;
    *) die "MESHCART_TOOLS_METHOD must be go or download, not '$method'" ;;
  esac
}

# Two runs at once (make -j, two shells) would race on the same files.
lock_bin_dir() {
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$bin_dir/.lock"
  flock -w 1800 9 || die "another tools.sh run holds $bin_dir/.lock"
}

main() {
  local print_path=0 tools="" arg tool
  for arg in "$@"; do
    case $arg in
      --print-path) print_path=1 ;;
      -h | --help) usage; exit 0 ;;
      -*) echo "tools.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
      kube) tools="$tools $KUBE_TOOLS" ;;
      *) is_known_tool "$arg" || { echo "tools.sh: unknown tool '$arg' (known: $ALL_TOOLS, or kube for the last six)" >&2; exit 2; }
         tools="$tools $arg" ;;
    esac
  done
  bin_dir=$(absolute "${MESHCART_TOOLS_DIR:-$root/.tools/bin}")
  if [[ $print_path -eq 1 ]]; then echo "$bin_dir"; exit 0; fi
  if [[ -z $tools ]]; then tools=$DEFAULT_TOOLS; fi
  for tool in $tools; do
    [[ -n "$(pinned_version "$tool")" ]] || die "versions.env pins no version for $tool"
  done

  mkdir -p "$bin_dir"
  bin_dir=$(cd "$bin_dir" && pwd -P)
  trap on_exit EXIT
  # Make a Ctrl-C or kill run on_exit too, so no scratch folder is left.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  work=$(mktemp -d "$bin_dir/.tools-tmp.XXXXXX")
  lock_bin_dir
  choose_method
  for tool in $tools; do
    current_tool=$tool
    if [[ $tool == shellcheck ]]; then install_shellcheck; else install_go_tool "$tool"; fi
  done
}

main "$@"
