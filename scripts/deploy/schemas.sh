#!/usr/bin/env bash
# Prepares the JSON schemas kubeconform validates the chart's output with,
# offline afterwards:
#
#   scripts/deploy/schemas.sh [--print-dir]
#
# - Kubernetes: the strict schemas (unknown fields are errors, as for
#   `kubectl apply`) of KUBERNETES_SCHEMA_VERSION from the PyPI package
#   kubernetes-validate (KUBERNETES_VALIDATE_VERSION, SHA-256 pinned), with
#   their $refs made relative so that kubeconform resolves them on disk:
#   <dir>/kubernetes/<version>-strict/<kind>-<group>-<version>.json
# - Custom resources (Linkerd policy, Gateway API): converted from the real
#   CRDs into <dir>/crds/<group>/<kind>_<version>.json by crd-schemas.mjs.
#   The CRDs are those scripts/deploy/crds.sh names: MESHCART_CRDS, else
#   ../shared/crds next to the repository (CI), else the pinned linkerd-crds
#   chart and the Gateway API release file, fetched once.
#
# <dir> is .tools/schemas (MESHCART_SCHEMAS_DIR overrides). Versions live in
# versions.env. Needs python3 with pip (PyPI) and node.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=/dev/null
source "$root/versions.env"

dir=${MESHCART_SCHEMAS_DIR:-$root/.tools/schemas}
if [[ ${1:-} == --print-dir ]]; then
  echo "$dir"
  exit 0
fi

die() {
  echo "schemas.sh: error: $*" >&2
  exit 1
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | awk '{print $1}'; else shasum -a 256 "$1" | awk '{print $1}'; fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- Kubernetes ---------------------------------------------------------------
k8s_dir="$dir/kubernetes/v${KUBERNETES_SCHEMA_VERSION}-strict"
k8s_stamp="kubernetes-validate ${KUBERNETES_VALIDATE_VERSION} ${KUBERNETES_VALIDATE_SHA256} v${KUBERNETES_SCHEMA_VERSION}"
if [[ -f $k8s_dir/.stamp && "$(cat "$k8s_dir/.stamp")" == "$k8s_stamp" ]]; then
  echo "Kubernetes ${KUBERNETES_SCHEMA_VERSION} schemas already present ($k8s_dir)"
else
  command -v python3 >/dev/null 2>&1 || die "python3 is needed to fetch the Kubernetes schemas (apt-get install python3 python3-pip)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" \
    "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}" ||
    die "pip could not download kubernetes-validate ${KUBERNETES_VALIDATE_VERSION} from PyPI"
  wheel=$(find "$work" -maxdepth 1 -name 'kubernetes_validate-*.whl' | head -n 1)
  [[ -n $wheel ]] || die "pip downloaded no kubernetes-validate wheel"
  actual=$(sha256_of "$wheel")
  [[ $actual == "$KUBERNETES_VALIDATE_SHA256" ]] ||
    die "$(basename "$wheel"): SHA-256 $actual, expected $KUBERNETES_VALIDATE_SHA256 (versions.env); refusing it"
  rm -rf "$k8s_dir.tmp"
  mkdir -p "$k8s_dir.tmp"
  # The wheel is a zip; only the strict schemas of one version are kept, with
  # "$id" dropped and "/api/_definitions.json#..." made "_definitions.json#..."
  # so that kubeconform finds the definitions beside each schema.
  python3 - "$wheel" "v${KUBERNETES_SCHEMA_VERSION}-local-strict" "$k8s_dir.tmp" <<'PY'
import json, os, sys, zipfile
wheel, version, out = sys.argv[1:4]
prefix = f"kubernetes_validate/kubernetes-json-schema/{version}/"
def fix(node):
    if isinstance(node, dict):
        node.pop("$id", None)
        for key, value in list(node.items()):
            if key == "$ref" and isinstance(value, str) and value.startswith("/api/_definitions.json"):
                node[key] = value[len("/api/"):]
            else:
                fix(value)
    elif isinstance(node, list):
        for item in node:
            fix(item)
count = 0
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if not name.startswith(prefix) or not name.endswith(".json"):
            continue
        schema = json.loads(z.read(name))
        fix(schema)
        with open(os.path.join(out, os.path.basename(name)), "w") as f:
            json.dump(schema, f)
        count += 1
if count == 0:
    sys.exit(f"the wheel has no schemas under {prefix}")
print(f"{count} Kubernetes schemas extracted")
PY
  echo "$k8s_stamp" >"$k8s_dir.tmp/.stamp"
  rm -rf "$k8s_dir"
  mv "$k8s_dir.tmp" "$k8s_dir"
  echo "Kubernetes ${KUBERNETES_SCHEMA_VERSION} schemas ready ($k8s_dir)"
fi

# --- CRDs ---------------------------------------------------------------------
crd_list=$("$root/scripts/deploy/crds.sh")
crd_sources=()
while IFS= read -r source; do crd_sources+=("$source"); done <<<"$crd_list"
node "$root/scripts/deploy/crd-schemas.mjs" "$dir/crds" "${crd_sources[@]}"
