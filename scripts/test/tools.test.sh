#!/usr/bin/env bash
# Tests scripts/tools.sh's download path, the one a laptop without go takes,
# against a fake release mirror: python3's http.server on 127.0.0.1 serving
# fake archives and binaries (a shell script named like each tool) with
# checksum files laid out like the real releases (GitHub, get.helm.sh,
# dl.k8s.io). go, shellcheck and apt-get are kept off
# PATH, and every run writes to a temporary folder, never to .tools/.
# Last line: "N passed, N failed"; exits non-zero if anything failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tools_sh="$repo/scripts/tools.sh"
# shellcheck source=/dev/null
source "$repo/versions.env"
: "${GRPCURL_VERSION:?}" "${HELM_VERSION:?}" "${KUBECONFORM_VERSION:?}" "${GHZ_VERSION:?}" \
  "${SHELLCHECK_VERSION:?}" "${PROMTOOL_VERSION:?}" "${NATS_SERVER_VERSION:?}" "${KUBERNETES_VERSION:?}" "${ETCD_VERSION:?}" "${KWOK_VERSION:?}"
# Prometheus's release of the promtool Go module v0.3XX.Y is 3.XX.Y.
promtool_release=3.${PROMTOOL_VERSION#0.3}

tmp=$(mktemp -d)
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

passed=0
failed=0
out="$tmp/out"
err="$tmp/err"
: >"$out"
: >"$err"

check() {
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "ok - $name"
  else
    failed=$((failed + 1))
    echo "not ok - $name"
    sed 's/^/    stdout: /' "$out"
    sed 's/^/    stderr: /' "$err"
  fi
}

# --- a PATH without go, shellcheck or apt-get -------------------------------

sysbin="$tmp/sysbin"
mkdir "$sysbin"
for cmd in bash env cat sed awk tr grep sha256sum sha512sum mktemp mkdir rm mv cp chmod ln \
  readlink uname dirname head tail curl tar gzip xz flock; do
  if path=$(command -v "$cmd"); then ln -s "$path" "$sysbin/$cmd"; fi
done

# --- the fake mirror ---------------------------------------------------------

mirror="$tmp/mirror"
good="$mirror/good"
gh="$good/github.com"
grpcurl_dir="$gh/fullstorydev/grpcurl/releases/download/v$GRPCURL_VERSION"
kubeconform_dir="$gh/yannh/kubeconform/releases/download/v$KUBECONFORM_VERSION"
ghz_dir="$gh/bojand/ghz/releases/download/v$GHZ_VERSION"
helm_dir="$good/get.helm.sh"
shellcheck_dir="$gh/koalaman/shellcheck/releases/download/v$SHELLCHECK_VERSION"
envtest_dir="$gh/kubernetes-sigs/controller-tools/releases/download/envtest-v$KUBERNETES_VERSION"
k8s_dir="$good/dl.k8s.io/release/v$KUBERNETES_VERSION/bin"
kwok_dir="$gh/kubernetes-sigs/kwok/releases/download/v$KWOK_VERSION"
promtool_dir="$gh/prometheus/prometheus/releases/download/v$promtool_release"
nats_dir="$gh/nats-io/nats-server/releases/download/v$NATS_SERVER_VERSION"
mkdir -p "$grpcurl_dir" "$kubeconform_dir" "$ghz_dir" "$helm_dir" "$shellcheck_dir" "$envtest_dir" "$k8s_dir" "$kwok_dir" \
  "$promtool_dir" "$nats_dir"

sha() { sha256sum "$1" | awk '{ print $1 }'; }
sha512() { sha512sum "$1" | awk '{ print $1 }'; }

# fake_tool DIR NAME OUTPUT: a script that prints OUTPUT, like `NAME --version`
fake_tool() {
  mkdir -p "$1"
  printf '#!/bin/sh\necho "%s"\n' "$3" >"$1/$2"
  chmod 755 "$1/$2"
}

# archive OUT SRC MEMBER...: tar.gz or tar.xz, as the real releases ship them
archive() {
  local dest=$1 src=$2
  shift 2
  case $dest in
    *.tar.xz) tar -cJf "$dest" -C "$src" "$@" ;;
    *) tar -czf "$dest" -C "$src" "$@" ;;
  esac
}

# make_platform OS ARCH: the archives of one platform, named as each
# project names them (written out here, independently of tools.sh).
make_platform() {
  local os=$1 arch=$2 x86=$2 osx=$1 aarch=$2 src="$tmp/src-$1-$2"
  [[ $arch == amd64 ]] && x86=x86_64 && aarch=x86_64
  [[ $arch == arm64 ]] && aarch=aarch64
  [[ $os == darwin ]] && osx=osx
  mkdir -p "$src"
  echo "fake license" >"$src/LICENSE"

  fake_tool "$src" grpcurl "grpcurl v$GRPCURL_VERSION"
  local a="grpcurl_${GRPCURL_VERSION}_${osx}_${x86}.tar.gz"
  archive "$grpcurl_dir/$a" "$src" grpcurl LICENSE
  echo "$(sha "$grpcurl_dir/$a")  $a" >>"$grpcurl_dir/grpcurl_${GRPCURL_VERSION}_checksums.txt"

  fake_tool "$src" kubeconform "v$KUBECONFORM_VERSION"
  a="kubeconform-$os-$arch.tar.gz"
  archive "$kubeconform_dir/$a" "$src" kubeconform LICENSE
  echo "$(sha "$kubeconform_dir/$a")  $a" >>"$kubeconform_dir/CHECKSUMS"

  fake_tool "$src" ghz "v$GHZ_VERSION"
  fake_tool "$src" ghz-web "v$GHZ_VERSION"
  a="ghz-$os-$x86.tar.gz"
  archive "$ghz_dir/$a" "$src" ghz ghz-web LICENSE
  sha "$ghz_dir/$a" >"$ghz_dir/$a.sha256"

  fake_tool "$src/$os-$arch" helm "v$HELM_VERSION+gfake"
  a="helm-v$HELM_VERSION-$os-$arch.tar.gz"
  archive "$helm_dir/$a" "$src" "$os-$arch/helm"
  echo "$(sha "$helm_dir/$a")  $a" >"$helm_dir/$a.sha256sum"

  fake_tool "$src/shellcheck-v$SHELLCHECK_VERSION" shellcheck "version: $SHELLCHECK_VERSION"
  a="shellcheck-v$SHELLCHECK_VERSION.$os.$aarch.tar.xz"
  archive "$shellcheck_dir/$a" "$src" "shellcheck-v$SHELLCHECK_VERSION/shellcheck"

  local prom="prometheus-$promtool_release.$os-$arch"
  fake_tool "$src/$prom" promtool "promtool, version $promtool_release (branch: HEAD)"
  fake_tool "$src/$prom" prometheus "prometheus, version $promtool_release"
  a="$prom.tar.gz"
  archive "$promtool_dir/$a" "$src" "$prom/prometheus" "$prom/promtool"
  echo "$(sha "$promtool_dir/$a")  $a" >>"$promtool_dir/sha256sums.txt"

  # nats-server: goreleaser, the binary inside a folder named like the archive
  local nats="nats-server-v$NATS_SERVER_VERSION-$os-$arch"
  fake_tool "$src/$nats" nats-server "nats-server: v$NATS_SERVER_VERSION"
  cp "$src/LICENSE" "$src/$nats/LICENSE"
  a="$nats.tar.gz"
  archive "$nats_dir/$a" "$src" "$nats/nats-server" "$nats/LICENSE"
  echo "$(sha "$nats_dir/$a")  $a" >>"$nats_dir/SHA256SUMS"

  # envtest: one archive, three tools under controller-tools/envtest/
  local e="$src/controller-tools/envtest"
  fake_tool "$e" kube-apiserver "Kubernetes v$KUBERNETES_VERSION"
  fake_tool "$e" kubectl "Client Version: v$KUBERNETES_VERSION"
  fake_tool "$e" etcd "etcd Version: $ETCD_VERSION"
  archive "$envtest_dir/envtest-v$KUBERNETES_VERSION-$os-$arch.tar.gz" "$src" \
    controller-tools/envtest/kube-apiserver controller-tools/envtest/kubectl controller-tools/envtest/etcd

  # dl.k8s.io: bare binaries with a bare-hash "<name>.sha256", Linux only
  if [[ $os == linux ]]; then
    for a in kube-controller-manager kube-scheduler; do
      fake_tool "$k8s_dir/$os/$arch" "$a" "Kubernetes v$KUBERNETES_VERSION"
      sha "$k8s_dir/$os/$arch/$a" >"$k8s_dir/$os/$arch/$a.sha256"
    done
  fi

  # kwok: a bare binary, no checksum file
  fake_tool "$src" kwok "kwok version v$KWOK_VERSION go1.26 ($os/$arch)"
  cp "$src/kwok" "$kwok_dir/kwok-$os-$arch"
}

make_platform linux amd64
make_platform darwin arm64
# A decoy line for an asset nobody asks for must not be picked.
echo "$(printf '0%.0s' {1..64})  grpcurl_${GRPCURL_VERSION}_windows_x86_64.zip" \
  >>"$grpcurl_dir/grpcurl_${GRPCURL_VERSION}_checksums.txt"
printf 'apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Stage\nmetadata:\n  name: fake\n' >"$kwok_dir/stage-fast.yaml"
sc_linux_sha=$(sha "$shellcheck_dir/shellcheck-v$SHELLCHECK_VERSION.linux.x86_64.tar.xz")
envtest_linux_sha=$(sha512 "$envtest_dir/envtest-v$KUBERNETES_VERSION-linux-amd64.tar.gz")
envtest_darwin_sha=$(sha512 "$envtest_dir/envtest-v$KUBERNETES_VERSION-darwin-arm64.tar.gz")
kwok_linux_sha=$(sha "$kwok_dir/kwok-linux-amd64")
kwok_darwin_sha=$(sha "$kwok_dir/kwok-darwin-arm64")
stages_sha=$(sha "$kwok_dir/stage-fast.yaml")
sc_darwin_sha=$(sha "$shellcheck_dir/shellcheck-v$SHELLCHECK_VERSION.darwin.aarch64.tar.xz")

# The bad mirror: the same releases, each with its checksum broken another way.
bad="$mirror/bad"
cp -R "$good" "$bad"
bgh="$bad/github.com"
b_sums="$bgh/fullstorydev/grpcurl/releases/download/v$GRPCURL_VERSION/grpcurl_${GRPCURL_VERSION}_checksums.txt"
sed "s/^[0-9a-f]*  \(grpcurl_.*_linux_x86_64.tar.gz\)$/$(printf 'f%.0s' {1..64})  \1/" "$b_sums" >"$b_sums.new"
mv "$b_sums.new" "$b_sums"
b_kc="$bgh/yannh/kubeconform/releases/download/v$KUBECONFORM_VERSION/CHECKSUMS"
grep -v linux-amd64 "$b_kc" >"$b_kc.new"
mv "$b_kc.new" "$b_kc"
rm "$bgh/bojand/ghz/releases/download/v$GHZ_VERSION/ghz-linux-x86_64.tar.gz.sha256"
# helm: the archive was tampered with after its checksum was published
echo "tampered" >>"$bad/get.helm.sh/helm-v$HELM_VERSION-linux-amd64.tar.gz"
# nats-server: its SHA256SUMS names another archive's hash for the linux one
n_sums="$bgh/nats-io/nats-server/releases/download/v$NATS_SERVER_VERSION/SHA256SUMS"
darwin_line=$(grep darwin-arm64 "$n_sums" | awk '{ print $1 }')
sed "s/^[0-9a-f]*  \(nats-server-.*-linux-amd64.tar.gz\)$/$darwin_line  \1/" "$n_sums" >"$n_sums.new"
mv "$n_sums.new" "$n_sums"
# kube-scheduler: the same, on dl.k8s.io
echo "tampered" >>"$bad/dl.k8s.io/release/v$KUBERNETES_VERSION/bin/linux/amd64/kube-scheduler"

# --- serve it on 127.0.0.1 ---------------------------------------------------

python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$mirror" \
  >"$tmp/server.out" 2>"$tmp/server.log" &
server_pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.* port \([0-9][0-9]*\).*/\1/p' "$tmp/server.out" | head -n 1)
  [[ -n $port ]] && break
  sleep 0.1
done
if [[ -z $port ]]; then
  echo "the fake mirror did not start:"
  cat "$tmp/server.log"
  echo "0 passed, 1 failed"
  exit 1
fi
good_url="http://127.0.0.1:$port/good"
bad_url="http://127.0.0.1:$port/bad"

# --- running tools.sh ---------------------------------------------------------

# run [NAME=VALUE...] [tools.sh argument...]: runs tools.sh with a clean
# environment, the PATH above and the good mirror for linux/amd64; sets rc.
rc=0
run() {
  local envs=()
  while [[ $# -gt 0 && $1 == *=* ]]; do
    envs+=("$1")
    shift
  done
  env -i HOME="$tmp/home" PATH="$sysbin" MESHCART_TOOLS_MIRROR="$good_url" \
    MESHCART_TOOLS_OS=linux MESHCART_TOOLS_ARCH=amd64 "${envs[@]}" \
    bash "$tools_sh" "$@" >"$out" 2>"$err"
  rc=$?
}

succeeded() { [[ $rc -eq 0 ]]; }
failed_run() { [[ $rc -ne 0 ]]; }
stdout_has() { grep -qF -- "$1" "$out"; }
stderr_has() { grep -qF -- "$1" "$err"; }
line_count() { [[ $(grep -c . "$out") -eq $1 ]]; }
no_leftovers() { ! compgen -G "$1/.tools-tmp.*" >/dev/null; }

# prints_version DIR TOOL ARGS VERSION: the installed tool runs and reports it
prints_version() {
  # shellcheck disable=SC2086 # $3 holds the arguments, split on purpose
  [[ -x $1/$2 ]] && "$1/$2" $3 | grep -qF -- "$4"
}

all_pinned() {
  prints_version "$1" grpcurl -version "v$GRPCURL_VERSION" &&
    prints_version "$1" helm "version --short" "v$HELM_VERSION" &&
    prints_version "$1" kubeconform -v "v$KUBECONFORM_VERSION" &&
    prints_version "$1" ghz --version "v$GHZ_VERSION" &&
    prints_version "$1" shellcheck --version "$SHELLCHECK_VERSION" &&
    prints_version "$1" promtool --version "$promtool_release" &&
    prints_version "$1" nats-server --version "v$NATS_SERVER_VERSION"
}

stamps_present() {
  local t
  for t in grpcurl helm kubeconform ghz shellcheck promtool nats-server; do [[ -s $1/.$t.version ]] || return 1; done
}

home_is_clean() { [[ ! -e $tmp/home ]]; }
downloads() { grep -c "GET /good/.*$1" "$tmp/server.log"; }

# --- the tests ----------------------------------------------------------------

check "go, shellcheck and apt-get are hidden from tools.sh's PATH" \
  env -i PATH="$sysbin" bash -c '! command -v go && ! command -v shellcheck && ! command -v apt-get'

a="$tmp/a/bin"
run MESHCART_TOOLS_DIR="$a" --print-path
check "--print-path prints MESHCART_TOOLS_DIR" succeeded
check "--print-path output is exactly the folder" [ "$(cat "$out")" = "$a" ]
check "--print-path installs nothing" test ! -e "$a"

copy="$tmp/copy"
mkdir -p "$copy/scripts"
cp "$tools_sh" "$copy/scripts/tools.sh"
cp "$repo/versions.env" "$copy/versions.env"
env -i PATH="$sysbin" bash "$copy/scripts/tools.sh" --print-path >"$out" 2>"$err"
check "--print-path defaults to <repo>/.tools/bin" [ "$(cat "$out")" = "$copy/.tools/bin" ]
env -i PATH="$sysbin" MESHCART_TOOLS_MIRROR="$good_url" MESHCART_TOOLS_OS=linux \
  MESHCART_TOOLS_ARCH=amd64 bash "$copy/scripts/tools.sh" kubeconform >"$out" 2>"$err"
check "a copy of the layout installs into its own .tools/bin" \
  prints_version "$copy/.tools/bin" kubeconform -v "v$KUBECONFORM_VERSION"

run MESHCART_TOOLS_DIR="$a" MESHCART_TOOLS_SHELLCHECK_SHA256="$sc_linux_sha"
check "first run succeeds" succeeded
check "first run prints one line per tool" line_count 7
check "first run reports grpcurl installed" stdout_has "grpcurl $GRPCURL_VERSION installed (download, sha256 verified)"
check "first run reports helm installed" stdout_has "helm $HELM_VERSION installed (download, sha256 verified)"
check "first run reports kubeconform installed" stdout_has "kubeconform $KUBECONFORM_VERSION installed"
check "first run reports ghz installed" stdout_has "ghz $GHZ_VERSION installed"
check "first run reports shellcheck installed" stdout_has "shellcheck $SHELLCHECK_VERSION installed (download"
check "first run reports promtool installed" stdout_has "promtool $PROMTOOL_VERSION installed (download, sha256 verified)"
check "first run reports nats-server installed" stdout_has "nats-server $NATS_SERVER_VERSION installed (download, sha256 verified)"
check "all seven binaries are installed, executable and pinned" all_pinned "$a"
check "version stamps are written" stamps_present "$a"
check "only the named binary is taken from an archive (no ghz-web)" test ! -e "$a/ghz-web"
check "no temporary folders are left" no_leftovers "$a"
check "nothing is written outside the bin folder (HOME untouched)" home_is_clean
check "only promtool is taken from Prometheus's archive" test ! -e "$a/prometheus"
check "only nats-server is taken from its archive (no LICENSE)" test ! -e "$a/LICENSE"

before=$(ls -li "$a")
fetched=$(downloads '\.tar\.')
run MESHCART_TOOLS_DIR="$a" MESHCART_TOOLS_SHELLCHECK_SHA256="$sc_linux_sha"
check "second run succeeds" succeeded
check "second run prints one line per tool" line_count 7
check "second run finds every tool already present" [ "$(grep -c 'already present' "$out")" -eq 7 ]
check "second run installs nothing" [ "$before" = "$(ls -li "$a")" ]
check "second run downloads nothing" [ "$(downloads '\.tar\.')" -eq "$fetched" ]

rm "$a/.grpcurl.version"
run MESHCART_TOOLS_DIR="$a" grpcurl
check "without a stamp the version output is recognised" stdout_has "grpcurl $GRPCURL_VERSION already present"
check "the stamp is written again" test -s "$a/.grpcurl.version"

fake_tool "$a" kubeconform "v0.0.1"
run MESHCART_TOOLS_DIR="$a" kubeconform
check "a wrong version is replaced" stdout_has "kubeconform $KUBECONFORM_VERSION installed (download, sha256 verified, replaced another version)"
check "the replacement is the pinned version" prints_version "$a" kubeconform -v "v$KUBECONFORM_VERSION"

b="$tmp/b/bin"
run MESHCART_TOOLS_DIR="$b" grpcurl helm
check "named tools: succeeds" succeeded
check "named tools: one line per named tool" line_count 2
check "named tools: only those are installed" [ "$(ls "$b")" = "$(printf 'grpcurl\nhelm')" ]

c="$tmp/c/bin"
run MESHCART_TOOLS_DIR="$c" MESHCART_TOOLS_OS=darwin MESHCART_TOOLS_ARCH=arm64 \
  MESHCART_TOOLS_SHELLCHECK_SHA256="$sc_darwin_sha"
check "darwin/arm64: succeeds" succeeded
check "darwin/arm64: all seven installed" all_pinned "$c"
for asset in "grpcurl_${GRPCURL_VERSION}_osx_arm64.tar.gz" kubeconform-darwin-arm64.tar.gz \
  ghz-darwin-arm64.tar.gz "helm-v$HELM_VERSION-darwin-arm64.tar.gz" \
  "shellcheck-v$SHELLCHECK_VERSION.darwin.aarch64.tar.xz" "prometheus-$promtool_release.darwin-arm64.tar.gz" \
  "nats-server-v$NATS_SERVER_VERSION-darwin-arm64.tar.gz"; do
  check "darwin/arm64: fetched $asset" grep -qF "/$asset " "$tmp/server.log"
done

d="$tmp/d/bin"
mkdir -p "$d"
expect_refused() { # TOOL MESSAGE [NAME=VALUE...]: fails, says why, installs nothing
  local tool=$1 message=$2
  shift 2
  run MESHCART_TOOLS_DIR="$d" MESHCART_TOOLS_MIRROR="$bad_url" "$@" "$tool"
  check "$tool, $message: fails" failed_run
  check "$tool, $message: says so" stderr_has "$message"
  check "$tool, $message: leaves no binary" test ! -e "$d/$tool"
  check "$tool, $message: leaves no stamp" test ! -e "$d/.$tool.version"
  check "$tool, $message: leaves no temporary folder" no_leftovers "$d"
}
expect_refused grpcurl "checksum mismatch for grpcurl_${GRPCURL_VERSION}_linux_x86_64.tar.gz"
expect_refused helm "checksum mismatch for helm-v$HELM_VERSION-linux-amd64.tar.gz"
expect_refused kubeconform "no SHA-256 for kubeconform-linux-amd64.tar.gz"
expect_refused ghz "cannot fetch the checksum file $bad_url/github.com/bojand/ghz/releases/download/v$GHZ_VERSION/ghz-linux-x86_64.tar.gz.sha256"
# No override: the pinned hash of the real release must reject the fake.
expect_refused nats-server "checksum mismatch for nats-server-v$NATS_SERVER_VERSION-linux-amd64.tar.gz"
expect_refused shellcheck "checksum mismatch for shellcheck-v$SHELLCHECK_VERSION.linux.x86_64.tar.xz"
check "a refused run names what it refused" stderr_has "refusing to install shellcheck"

# --- the API-server tier's tools (tools.sh kube) ------------------------------

kube_overrides=(MESHCART_TOOLS_ENVTEST_SHA512="$envtest_linux_sha" MESHCART_TOOLS_KWOK_SHA256="$kwok_linux_sha"
  MESHCART_TOOLS_KWOK_STAGES_SHA256="$stages_sha")
kube_pinned() {
  prints_version "$1" kube-apiserver --version "Kubernetes v$KUBERNETES_VERSION" &&
    prints_version "$1" kubectl "version --client" "v$KUBERNETES_VERSION" &&
    prints_version "$1" etcd --version "etcd Version: $ETCD_VERSION" &&
    prints_version "$1" kwok --version "v$KWOK_VERSION" &&
    { [[ $2 == darwin ]] || {
      prints_version "$1" kube-controller-manager --version "v$KUBERNETES_VERSION" &&
        prints_version "$1" kube-scheduler --version "v$KUBERNETES_VERSION"
    }; }
}
f="$tmp/f/bin"
run MESHCART_TOOLS_DIR="$f" "${kube_overrides[@]}" kube
check "kube: succeeds" succeeded
check "kube: one line per tool" line_count 6
for t in kube-apiserver kubectl; do
  check "kube: $t from the envtest archive, SHA-512 checked" stdout_has "$t $KUBERNETES_VERSION installed (download, sha512 verified)"
done
check "kube: etcd from the envtest archive" stdout_has "etcd $ETCD_VERSION installed (download, sha512 verified)"
for t in kube-controller-manager kube-scheduler; do
  check "kube: $t from dl.k8s.io, SHA-256 checked" stdout_has "$t $KUBERNETES_VERSION installed (download, sha256 verified)"
done
check "kube: kwok from its release" stdout_has "kwok $KWOK_VERSION installed (download, sha256 verified)"
check "kube: all six binaries report the pinned versions" kube_pinned "$f" linux
check "kube: kwok's stages installed beside it, named by version" \
  [ "$(head -n 1 "$f/kwok-stages.yaml")" = "# kwok $KWOK_VERSION fast stages (its release's stage-fast.yaml)" ]
check "kube: kwok's stages are the release's" grep -qx 'kind: Stage' "$f/kwok-stages.yaml"
check "kube: the envtest archive is downloaded once for its three tools" [ "$(downloads envtest-v)" -eq 1 ]
check "kube: no temporary folders are left" no_leftovers "$f"

fetched=$(downloads '')
run MESHCART_TOOLS_DIR="$f" "${kube_overrides[@]}" kube
check "kube, second run: every tool already present" [ "$(grep -c 'already present' "$out")" -eq 6 ]
check "kube, second run: nothing downloaded" [ "$(downloads '')" -eq "$fetched" ]
rm "$f/kwok-stages.yaml"
run MESHCART_TOOLS_DIR="$f" "${kube_overrides[@]}" kwok
check "kube: kwok without its stages is installed again" stdout_has "kwok $KWOK_VERSION installed"
check "kube: and its stages with it" test -s "$f/kwok-stages.yaml"

g="$tmp/g/bin"
run MESHCART_TOOLS_DIR="$g" MESHCART_TOOLS_OS=darwin MESHCART_TOOLS_ARCH=arm64 \
  MESHCART_TOOLS_ENVTEST_SHA512="$envtest_darwin_sha" MESHCART_TOOLS_KWOK_SHA256="$kwok_darwin_sha" \
  MESHCART_TOOLS_KWOK_STAGES_SHA256="$stages_sha" kube-apiserver kubectl etcd kwok
check "kube, darwin/arm64: the envtest tools and kwok install" kube_pinned "$g" darwin
check "kube, darwin/arm64: fetched envtest-v$KUBERNETES_VERSION-darwin-arm64.tar.gz" \
  grep -qF "/envtest-v$KUBERNETES_VERSION-darwin-arm64.tar.gz " "$tmp/server.log"
run MESHCART_TOOLS_DIR="$g" MESHCART_TOOLS_OS=darwin MESHCART_TOOLS_ARCH=arm64 kube-controller-manager
check "kube, darwin/arm64: kube-controller-manager has no release there: fails" failed_run
check "kube, darwin/arm64: says to install go" stderr_has "kube-controller-manager publishes no release for darwin/arm64; install go"

expect_refused kube-apiserver "checksum mismatch for envtest-v$KUBERNETES_VERSION-linux-amd64.tar.gz"
expect_refused kube-scheduler "checksum mismatch for kube-scheduler" "${kube_overrides[@]}"
expect_refused kwok "checksum mismatch for kwok-linux-amd64"
expect_refused kwok "no SHA-256 for kwok-linux-arm64" MESHCART_TOOLS_ARCH=arm64

h="$tmp/h/bin"
mkdir -p "$h"
fake_tool "$h" helm "v3.19"
echo "$HELM_VERSION $(sha "$h/helm")" >"$h/.helm.version"
run MESHCART_TOOLS_DIR="$h" helm
check "a helm that says v3.19 (a go install without -ldflags) is replaced despite its stamp" \
  stdout_has "helm $HELM_VERSION installed (download, sha256 verified, replaced another version)"

e="$tmp/e/bin"
fetched=$(downloads shellcheck)
fake_tool "$tmp/onpath" shellcheck "version: 0.9.0"
run MESHCART_TOOLS_DIR="$e" PATH="$tmp/onpath:$sysbin" shellcheck
check "a shellcheck on PATH is preferred" stdout_has "shellcheck 0.9.0 already present ($tmp/onpath/shellcheck)"
check "it is linked into the bin folder" [ "$(readlink "$e/shellcheck")" = "$tmp/onpath/shellcheck" ]
check "nothing was downloaded for it" [ "$(downloads shellcheck)" -eq "$fetched" ]

run MESHCART_TOOLS_DIR="$e" nosuchtool
check "an unknown tool is rejected with exit 2" [ "$rc" -eq 2 ]
check "an unknown tool is named" stderr_has "unknown tool 'nosuchtool'"

run MESHCART_TOOLS_DIR="$e" MESHCART_TOOLS_METHOD=go grpcurl
check "MESHCART_TOOLS_METHOD=go without go fails clearly" stderr_has "go is not on PATH"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
