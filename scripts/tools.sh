#!/usr/bin/env bash
# Installs meshcart's pinned command-line tools (grpcurl, helm, kubeconform,
# ghz, shellcheck, promtool) into <repo>/.tools/bin. `make tools` calls it; CI may
# name only the tools its tests need.
#
#   scripts/tools.sh [tool...]   install the named tools (default: all)
#   scripts/tools.sh --print-path
#                                print the bin folder and install nothing
#
# Versions come from versions.env. Where `go` is on PATH a tool is built with
# `go install module@vX.Y.Z` (the Go module proxy is reachable where GitHub is
# not); otherwise the project's release archive is downloaded with curl, its
# SHA-256 checked against the checksum file that release publishes (pinned in
# this file for shellcheck, which publishes none), and the binary extracted.
# A shellcheck already on PATH, or from apt-get, is preferred to a download.
#
# Environment (all optional):
#   MESHCART_TOOLS_DIR     bin folder (default <repo>/.tools/bin)
#   MESHCART_TOOLS_METHOD  go | download (default: go when go is on PATH)
#   MESHCART_TOOLS_MIRROR  base URL that replaces https://github.com and
#                          https://get.helm.sh: assets are fetched from
#                          $MIRROR/github.com/... and $MIRROR/get.helm.sh/...
#   MESHCART_TOOLS_OS, MESHCART_TOOLS_ARCH
#                          release platform (linux|darwin, amd64|arm64);
#                          default from uname
#   MESHCART_TOOLS_SHELLCHECK_SHA256
#                          SHA-256 of the shellcheck archive, for a version or
#                          platform this file has no pin for
#
# What could not be verified offline (this was written on a machine that
# reaches package registries but not GitHub or get.helm.sh): the download
# path ran only against a local fake mirror (scripts/test/tools.test.sh), so
# these names come from the projects' release configurations and from
# public scripts that fetch the same versions, not from the real servers:
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
# Nor was the --version output of the real release binaries (used only when
# a binary has no stamp). The go install path and the apt-get path ran for
# real.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# versions.env is plain KEY=VALUE lines, read through ${!var} below; not
# following it keeps shellcheck quiet from any folder, with or without -x.
# shellcheck source=/dev/null
source "$root/versions.env"

ALL_TOOLS="grpcurl helm kubeconform ghz shellcheck promtool"
bin_dir=""      # where the tools go; set by main
method=""       # go | download; set by choose_method
work=""         # scratch folder inside bin_dir, removed on exit
current_tool="" # for the message of an unexpected failure
died=0
asset="" url="" sums_url="" # the release being downloaded (release_asset)

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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
  esac
}

# The arguments that make each tool print its version.
version_args() {
  case $1 in
    grpcurl) echo -version ;;
    helm) echo "version --short" ;;
    kubeconform) echo -v ;;
    ghz | shellcheck | promtool) echo --version ;;
  esac
}

is_known_tool() {
  case " $ALL_TOOLS " in
    *" $1 "*) return 0 ;;
    *) return 1 ;;
  esac
}

# --- is the pinned version already there? -----------------------------------

file_sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | awk '{ print tolower($1) }'
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | awk '{ print tolower($1) }'
  else
    return 1
  fi
}

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
  stamp_matches "$tool" "$version" && return 0
  [[ "$(buildinfo_version "$bin" "$(go_package "$tool")")" == "$version" ]] && return 0
  reports_version "$tool" "$version"
}

# --- building with go --------------------------------------------------------

# Build tags of a tool: promtool without Prometheus's service discoveries
# (cloud SDKs it does not need to lint metrics), which halves its build.
go_tags() {
  case $1 in
    promtool) echo remove_all_sd ;;
  esac
}

install_with_go() {
  local tool=$1 version=$2 stage=$3 pkg
  pkg=$(go_package "$tool")
  progress "building $tool $version with go install (may take minutes) ..."
  if ! GOBIN="$stage" go install -tags "$(go_tags "$tool")" "$pkg@v$version" >"$stage/go.log" 2>&1; then
    tail -n 20 "$stage/go.log" >&2
    die "go install $pkg@v$version failed (log above)"
  fi
  [[ -f $stage/$tool ]] || die "go install $pkg@v$version produced no $tool"
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

# Sets asset (archive file name), url (its URL) and sums_url (the checksum
# file the release publishes; empty where the hash is pinned here instead).
# Each project names its platforms its own way, hence the mapping.
release_asset() {
  local tool=$1 v=$2 os=$3 arch=$4 gh x86 osx rel
  gh=$(github_base)
  x86=$arch
  if [[ $arch == amd64 ]]; then x86=x86_64; fi
  osx=$os
  if [[ $os == darwin ]]; then osx=osx; fi
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
    promtool) # in the Prometheus release; module v0.3XX.Y is release 3.XX.Y
      rel=${v#0.}
      rel="$((${rel%%.*} / 100)).$((${rel%%.*} % 100)).${v##*.}"
      asset="prometheus-$rel.$os-$arch.tar.gz"
      url="$gh/prometheus/prometheus/releases/download/v$rel/$asset"
      sums_url="$gh/prometheus/prometheus/releases/download/v$rel/sha256sums.txt" ;;
    shellcheck) # no checksum file is published: see shellcheck_sha256
      if [[ $arch == arm64 ]]; then x86=aarch64; fi
      asset="shellcheck-v$v.$os.$x86.tar.xz"
      url="$gh/koalaman/shellcheck/releases/download/v$v/$asset"
      sums_url="" ;;
  esac
}

# koalaman/shellcheck releases publish no checksums, so the archives' hashes
# are pinned here (taken from several independent public manifests that
# agree; not recomputed offline). Bumping SHELLCHECK_VERSION needs new pins.
shellcheck_sha256() {
  if [[ -n ${MESHCART_TOOLS_SHELLCHECK_SHA256:-} ]]; then
    echo "$MESHCART_TOOLS_SHELLCHECK_SHA256"
    return 0
  fi
  case "$1" in
    shellcheck-v0.10.0.linux.x86_64.tar.xz) echo 6c881ab0698e4e6ea235245f22832860544f17ba386442fe7e9d629f8cbedf87 ;;
    shellcheck-v0.10.0.linux.aarch64.tar.xz) echo 324a7e89de8fa2aed0d0c28f3dab59cf84c6d74264022c00c22af665ed1a09bb ;;
    shellcheck-v0.10.0.darwin.x86_64.tar.xz) echo ef27684f23279d112d8ad84e0823642e43f838993bbb8c0963db9b58a90464c2 ;;
    shellcheck-v0.10.0.darwin.aarch64.tar.xz) echo bbd2f14826328eee7679da7221f2bc3afb011f6a928b848c80c321f6046ddf81 ;;
  esac
}

fetch() {
  curl -fsSL --retry 3 --connect-timeout 30 -o "$2" "$1"
}

# Reads a checksum file in either published shape: "<hash>  <name>" lines
# (sha256sum, goreleaser) or a single bare hash (ghz's *.sha256).
expected_sha256() {
  local sums=$1 asset=$2
  awk -v asset="$asset" '
    NF >= 2 { name = $2; sub(/^\*/, "", name); sub(/^\.\//, "", name)
              if (name == asset && found == "") found = $1 }
    NF == 1 { bare = $1; bares++ }
    END { if (found == "" && bares == 1 && NR == 1) found = bare
          if (length(found) == 64 && found ~ /^[0-9a-fA-F]+$/) print tolower(found) }' "$sums"
}

# The expected hash of the archive, from the release's checksum file or the
# pin; an archive without one is never installed.
verify_archive() {
  local tool=$1 archive=$2 stage=$3 expected actual
  if [[ -n $sums_url ]]; then
    fetch "$sums_url" "$stage/sums" ||
      die "cannot fetch the checksum file $sums_url; refusing to install $tool unverified (with go on PATH it is built from the Go module proxy instead)"
    expected=$(expected_sha256 "$stage/sums" "$asset")
  else
    expected=$(shellcheck_sha256 "$asset" | tr '[:upper:]' '[:lower:]')
  fi
  [[ -n $expected ]] || die "no SHA-256 for $asset (checked ${sums_url:-the pins in scripts/tools.sh}); refusing to install $tool"
  actual=$(file_sha256 "$archive") || die "need sha256sum or shasum to verify downloads"
  [[ $actual == "$expected" ]] ||
    die "checksum mismatch for $asset: expected $expected, got $actual; refusing to install $tool"
}

# Finds the archive member whose base name is the tool (helm keeps it in
# "<os>-<arch>/", shellcheck in "shellcheck-vX/", the others at the top).
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

install_from_release() {
  local tool=$1 version=$2 stage=$3 os arch
  os=$(platform_os) || die "no $tool release for OS $(uname -s); install go (https://go.dev/dl/) and run again"
  arch=$(platform_arch) || die "no $tool release for CPU $(uname -m); install go (https://go.dev/dl/) and run again"
  release_asset "$tool" "$version" "$os" "$arch"
  progress "downloading $url ..."
  fetch "$url" "$stage/$asset" || die "download failed: $url"
  verify_archive "$tool" "$stage/$asset" "$stage"
  extract_binary "$tool" "$stage/$asset" "$stage"
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
  local tool=$1 version note="" how
  version=$(pinned_version "$tool")
  if has_pinned_version "$tool" "$version"; then
    write_stamp "$tool" "$version"
    say "$tool $version already present"
    return 0
  fi
  if [[ -e $bin_dir/$tool || -L $bin_dir/$tool ]]; then note=", replaced another version"; fi
  install_binary "$tool" "$version" "$method"
  how="go install"
  if [[ $method == download ]]; then how="download, sha256 verified"; fi
  say "$tool $version installed ($how$note)"
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
      *) is_known_tool "$arg" || { echo "tools.sh: unknown tool '$arg' (known: $ALL_TOOLS)" >&2; exit 2; }
         tools="$tools $arg" ;;
    esac
  done
  bin_dir=$(absolute "${MESHCART_TOOLS_DIR:-$root/.tools/bin}")
  if [[ $print_path -eq 1 ]]; then echo "$bin_dir"; exit 0; fi
  if [[ -z $tools ]]; then tools=$ALL_TOOLS; fi
  for tool in $tools; do
    [[ -n "$(pinned_version "$tool")" ]] || die "$(echo "$tool" | tr '[:lower:]' '[:upper:]')_VERSION is missing from versions.env"
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
