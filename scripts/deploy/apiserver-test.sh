#!/usr/bin/env bash
# The chart against a real Kubernetes API server (make chart-test's last
# tier; alone: make apiserver-test). Starts etcd, kube-apiserver (client
# certificates, RBAC, 127.0.0.1, free ports), kube-controller-manager,
# kube-scheduler and kwok with one fake node, all of Kubernetes
# $KUBERNETES_VERSION (versions.env; scripts/tools.sh kube builds or fetches
# them), then:
#   - applies the Linkerd and Gateway API CRDs server-side (crds.sh);
#   - `kubectl apply --dry-run=server` of every object the chart renders,
#     for the defaults, every values-*.yaml and the tests' value sets
#     (test/deploy/values/*.yaml): the API server's own
#     validation, the CRDs' CEL rules, defaulting and admission;
#   - checks that it catches what the schemas cannot: a GRPCRoute method
#     name that kubeconform accepts and the CEL rule refuses;
#   - `helm upgrade --install --wait` as make deploy runs it, until every
#     Deployment and the Postgres StatefulSet (its claim bound) is ready;
#     then make deploy's "already deployed" check (lib.sh) must say kept;
#   - the very scripts behind make canary WEIGHT=10, make promote and make
#     rollback, against this server, and what each leaves in the routes;
#   - each values file and back again: upgrades that change what the API
#     server refuses to change (selectors, claim templates) fail here;
#   - the pod settings (test/deploy/values/pod-settings.yaml) on a tainted
#     node: every pod must tolerate the taint and match the selectors to be
#     scheduled, so the upgrade's wait proves they reach every pod;
#   - uninstall, then install again: the kept Secrets stay and are reused,
#     their passwords unchanged.
# Any refusal stops the run with the API server's (or Helm's) own message.
# Every process it starts is stopped on the way out, failed or not, and its
# files live in one temporary folder, removed too (MESHCART_KEEP=1 keeps it).
#
# kwok plays the kubelet: its pods never run a container, so this proves
# what the API server and the controllers accept and do, not that the
# services start, talk or are meshed. That takes a real cluster: make e2e
# (.github/workflows/e2e.yaml).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
# shellcheck source=/dev/null
source versions.env

bin=$(scripts/tools.sh --print-path)
export PATH="$bin:$root/.tools/node/bin:$PATH"
namespace=meshcart
release=meshcart
chart=helm/meshcart
context=meshcart-apiserver-test
fake_node=kwok-node-0

for tool in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm kubeconform node openssl; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "apiserver-test: $tool is missing (scripts/tools.sh kube helm kubeconform installs the pinned ones)" >&2; exit 1; }
done
[[ -f $bin/kwok-stages.yaml ]] || { echo "apiserver-test: $bin/kwok-stages.yaml is missing (scripts/tools.sh kwok)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/meshcart-apiserver-test.XXXXXX")
logs=$work/logs
mkdir -p "$logs"
# kubectl, helm and the deploy scripts talk to this server only, and write
# their caches here rather than into the home folder.
export KUBECONFIG=$work/admin.kubeconfig
export KUBECACHEDIR=$work/kube-cache HELM_CACHE_HOME=$work/helm/cache HELM_CONFIG_HOME=$work/helm/config HELM_DATA_HOME=$work/helm/data
export MESHCART_CONTEXT=$context MESHCART_NAMESPACE=$namespace MESHCART_RELEASE=$release

# --- processes ----------------------------------------------------------------

pids=()
names=()
failed=1
started_at=$SECONDS

start() {
  local name=$1
  shift
  "$@" >"$logs/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
}

stop_all() {
  local i pid waited
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for waited in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "    ${names[i]} ignored SIGTERM for ${waited}0 ms: killed" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}

on_exit() {
  local status=$? i
  if [[ $status -ne 0 || $failed -ne 0 ]]; then
    echo >&2
    echo "apiserver-test: failed after $((SECONDS - started_at))s; the last lines of each component's log:" >&2
    for i in "${!names[@]}"; do
      echo "--- ${names[i]}" >&2
      tail -n 10 "$logs/${names[i]}.log" >&2 || true
    done
  fi
  stop_all
  if [[ ${MESHCART_KEEP:-0} == 1 ]]; then
    echo "apiserver-test: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- output -------------------------------------------------------------------

step() { printf '\n==> %s\n' "$*"; }
ok() { printf '    %s\n' "$*"; }
# fail WHAT [OUTPUT_FILE]: stops with the output of what failed (without
# the objects a dry run accepted, so the refusal stands out).
fail() {
  printf 'FAIL: %s\n' "$1" >&2
  if [[ -n ${2:-} && -s $2 ]]; then grep -v '(server dry run)$' "$2" | sed 's/^/    /' >&2 || true; fi
  exit 1
}

# must WHAT COMMAND...: runs it; on failure stops with its own output.
must() {
  local what=$1
  shift
  "$@" >"$work/out" 2>&1 || fail "$what" "$work/out"
}

# wait_for WHAT SECONDS COMMAND...: until COMMAND succeeds, as long as every
# component still runs.
wait_for() {
  local what=$1 seconds=$2 deadline i
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >"$work/out" 2>&1; do
    for i in "${!pids[@]}"; do
      kill -0 "${pids[i]}" 2>/dev/null || fail "${names[i]} exited while waiting for $what" "$logs/${names[i]}.log"
    done
    ((SECONDS < deadline)) || fail "$what: not after ${seconds}s" "$work/out"
    sleep 0.5
  done
}

# --- ports and certificates --------------------------------------------------------

# Free ports on 127.0.0.1 from below the ephemeral range, as dev/stack/src/net.ts
# picks them (a port the kernel handed out and got back may be taken as a
# source port before the server binds it).
free_ports() {
  node -e '
    const net = require("node:net");
    const wanted = Number(process.argv[1]);
    const found = new Set();
    const tryPort = () => {
      if (found.size === wanted) return console.log([...found].join(" "));
      const port = 20000 + Math.floor(Math.random() * 12001);
      if (found.has(port)) return tryPort();
      const server = net.createServer();
      server.once("error", tryPort);
      server.listen({ host: "127.0.0.1", port, exclusive: true }, () => server.close(() => (found.add(port), tryPort())));
    };
    tryPort();
  ' "$1"
}

pki=$work/pki
mkdir -p "$pki"
# cert NAME SUBJECT [SUBJECT_ALT_NAMES]: a P-256 key and a certificate of the
# test's own CA, valid for a day.
cert() {
  local name=$1 subject=$2 san=${3:-}
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subject" \
    -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null
  if [[ -n $san ]]; then printf 'subjectAltName=%s\n' "$san" >"$pki/$name.ext"; else : >"$pki/$name.ext"; fi
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 1 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
}

# kubeconfig NAME: a kubeconfig for the client certificate NAME.
kubeconfig() {
  cat >"$work/$1.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: $context
    cluster:
      server: https://127.0.0.1:$apiserver_port
      certificate-authority: $pki/ca.crt
users:
  - name: $1
    user:
      client-certificate: $pki/$1.crt
      client-key: $pki/$1.key
contexts:
  - name: $context
    # Objects without a namespace go where Helm puts them: the release's.
    context: {cluster: $context, user: $1, namespace: $namespace}
current-context: $context
KUBECONFIG
}

k() { kubectl --context "$context" "$@"; }

# =============================================================================

step "Kubernetes $KUBERNETES_VERSION on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok"
read -r etcd_port etcd_peer_port apiserver_port kwok_port <<<"$(free_ports 4)"
must "the test's CA" openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=meshcart-apiserver-test-ca" -keyout "$pki/ca.key" -out "$pki/ca.crt"
cert apiserver "/CN=kube-apiserver" "IP:127.0.0.1,DNS:localhost"
# Who is who for RBAC: the admin through system:masters; the controller
# manager and the scheduler as themselves, with the roles the API server
# bootstraps for them (the controllers use their own ServiceAccounts, as
# kubeadm sets it up).
cert admin "/O=system:masters/CN=meshcart-admin"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
must "the ServiceAccount signing key" openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/sa.key"
must "the ServiceAccount public key" openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
for who in admin controller-manager scheduler; do kubeconfig "$who"; done

start etcd etcd --name apiserver-test --data-dir "$work/etcd" --unsafe-no-fsync --log-level warn \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "apiserver-test=http://127.0.0.1:$etcd_peer_port"
start kube-apiserver kube-apiserver --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$apiserver_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" --client-ca-file "$pki/ca.crt" \
  --authorization-mode RBAC --service-cluster-ip-range 10.96.0.0/16 \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --cert-dir "$work/apiserver-certs"
wait_for "the API server's /readyz" 90 k get --raw /readyz
kubectl version --output=json >"$work/version.json"
server_version=$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1])).serverVersion.gitVersion' "$work/version.json")
ok "API server $server_version (kubectl $(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1])).clientVersion.gitVersion' "$work/version.json"), $(etcd --version | head -n 1), kwok $(kwok --version | awk '{print $3}')) on https://127.0.0.1:$apiserver_port"
[[ $server_version == "v$KUBERNETES_VERSION" ]] || fail "the API server says $server_version, versions.env pins v$KUBERNETES_VERSION"

start kube-controller-manager kube-controller-manager --kubeconfig "$work/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$work/controller-manager.kubeconfig" --authorization-kubeconfig "$work/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
  --use-service-account-credentials --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt"
start kube-scheduler kube-scheduler --kubeconfig "$work/scheduler.kubeconfig" \
  --authentication-kubeconfig "$work/scheduler.kubeconfig" --authorization-kubeconfig "$work/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false
# kwok's fast stages (tools.sh installs them beside it): nodes Ready with a
# lease heartbeat, pods Ready as soon as they are scheduled, Job pods done.
start kwok kwok --kubeconfig "$KUBECONFIG" --config "$bin/kwok-stages.yaml" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds 40 --cidr 10.244.0.0/24 --server-address "127.0.0.1:$kwok_port"
cat >"$work/node.yaml" <<NODE
apiVersion: v1
kind: Node
metadata:
  name: $fake_node
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: $fake_node
    kubernetes.io/os: linux
    type: kwok
status:
  allocatable: {cpu: "16", memory: 64Gi, pods: "110"}
  capacity: {cpu: "16", memory: 64Gi, pods: "110"}
NODE
must "creating the fake node" k apply -f "$work/node.yaml"
wait_for "node $fake_node Ready (kwok)" 60 k wait --for condition=Ready "node/$fake_node" --timeout 1s
# The ServiceAccount controller's first work: the controller manager runs.
wait_for "the default ServiceAccount (kube-controller-manager)" 60 k get serviceaccount default --namespace default
ok "node $fake_node Ready; controllers running ($((SECONDS - started_at))s)"

step "CRDs, server-side: Gateway API $GATEWAY_API_VERSION, Linkerd $LINKERD_VERSION"
crd_list=$(scripts/deploy/crds.sh)
while IFS= read -r source; do
  must "applying the CRDs of $source" k apply --server-side --field-manager meshcart-apiserver-test -f "$source"
  ok "$(grep -c 'serverside-applied' "$work/out") CRDs from $source"
done <<<"$crd_list"
must "the CRDs established" k wait --for condition=Established crd --all --timeout 60s

# As make deploy (the release's) and make mesh (viz's: the chart authorizes
# Grafana at viz's Prometheus there) leave them.
must "namespace $namespace" k create namespace "$namespace"
must "namespace $namespace meshed" k annotate namespace "$namespace" linkerd.io/inject=enabled
must "namespace linkerd-viz" k create namespace linkerd-viz

# Image tags as make deploy sets them (the images are never pulled here).
node scripts/deploy/image-tag.mjs --values >"$work/tags.yaml"
values_files=()
for file in "$chart"/values-*.yaml; do values_files+=("$file"); done
# The tests' own value sets: dry runs here, the pod settings' upgrade below.
test_values_files=()
for file in test/deploy/values/*.yaml; do test_values_files+=("$file"); done

# render OUT [VALUES [HELM_TEMPLATE_FLAG...]]: the chart as this server's
# Kubernetes version sees it.
render() {
  local out=$1 values=${2:-}
  shift
  shift || true
  helm template "$release" "$chart" --namespace "$namespace" --kube-version "$server_version" \
    -f "$work/tags.yaml" ${values:+-f "$values"} "$@" >"$out" 2>"$work/render.err" ||
    fail "helm template ${values:-(default values)}" "$work/render.err"
}

step "Server-side dry run of every rendered object (kubectl apply --dry-run=server)"
for values in "" "${values_files[@]}" "${test_values_files[@]}"; do
  # The helm test pods run under the release's ServiceAccounts, which a dry
  # run does not create: they are checked once the release is installed.
  render "$work/rendered.yaml" "$values" --skip-tests
  must "the server refused an object (${values:-default values})" \
    k apply --dry-run=server -f "$work/rendered.yaml"
  ok "${values:-default values}: $(grep -c 'server dry run' "$work/out") objects accepted"
done

step "The API server catches what the schemas cannot: a GRPCRoute method name only CEL refuses"
render "$work/rendered.yaml"
node scripts/deploy/apiserver-test.mjs invalid-grpc-method "$work/rendered.yaml" >"$work/invalid.yaml" 2>"$work/invalid.what"
ok "$(cat "$work/invalid.what")"
schemas=$(scripts/deploy/schemas.sh --print-dir)
must "kubeconform should accept the route (its schema limits only the length)" \
  kubeconform -strict -schema-location "$schemas/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" "$work/invalid.yaml"
ok "kubeconform -strict: accepted"
if k apply --dry-run=server -f "$work/invalid.yaml" >"$work/out" 2>&1; then
  fail "the API server accepted a GRPCRoute method its CEL rule refuses" "$work/out"
fi
grep -q 'method must only contain valid characters' "$work/out" || fail "refused, but not by the CEL rule" "$work/out"
ok "kubectl apply --dry-run=server: $(grep 'method must only contain valid characters' "$work/out" | head -n 1)"

step "PersistentVolumes for the Postgres claims"
# Nothing can provision storage on a fake node, so the volumes a kind
# cluster's provisioner would create are created beforehand, one per claim
# the StatefulSets will make, reserved for it (claimRef): the controller
# manager's binder still binds them, and the scheduler waits for that.
render "$work/rendered.yaml"
node scripts/deploy/apiserver-test.mjs claims "$work/rendered.yaml" >"$work/claims.jsonl"
while read -r claim; do
  # shellcheck disable=SC2016 # JavaScript, not shell
  node -e '
    const c = JSON.parse(process.argv[1]);
    console.log(JSON.stringify({
      apiVersion: "v1", kind: "PersistentVolume",
      metadata: { name: `apiserver-test-${c.name}` },
      spec: {
        capacity: { storage: c.storage }, accessModes: c.accessModes, storageClassName: c.storageClassName,
        persistentVolumeReclaimPolicy: "Retain", hostPath: { path: `/var/lib/apiserver-test/${c.name}` },
        claimRef: { namespace: process.argv[2], name: c.name },
      },
    }));
  ' "$claim" "$namespace" >"$work/pv.json"
  must "creating a PersistentVolume" k apply -f "$work/pv.json"
  ok "$(cat "$work/out")"
done <"$work/claims.jsonl"

# As make deploy installs the chart (deploy.sh): same arguments, same wait.
chart_args=("$release" "$chart" --namespace "$namespace" --kube-context "$context")
while read -r service tag; do chart_args+=(--set "$service.image.tag=$tag"); done < <(node scripts/deploy/image-tag.mjs)

# upgrade WHAT ARGS...: helm upgrade --install --wait, then what it left.
upgrade() {
  local what=$1 begun=$SECONDS summary revision
  shift
  must "$what" helm upgrade --install "${chart_args[@]}" "$@" --wait --timeout 5m
  summary=$(ready_summary)
  revision=$(release_revision)
  ok "$what: revision $revision, $summary ($((SECONDS - begun))s)"
}
# What the controllers and kwok made of the release: every Deployment and
# StatefulSet rolled out, its replicas ready. helm --wait reads the new
# ReplicaSet's status, which the Deployment's own status follows a moment
# later, so each rollout is awaited first as `kubectl rollout status` sees it.
ready_summary() {
  local workload
  for workload in $(k get deployments,statefulsets --namespace "$namespace" -o name); do
    k rollout status "$workload" --namespace "$namespace" --timeout 120s >"$work/rollout" 2>&1 ||
      fail "$workload did not roll out" "$work/rollout"
  done
  k get deployments,statefulsets --namespace "$namespace" -o json >"$work/workloads.json"
  # shellcheck disable=SC2016 # JavaScript, not shell
  node -e '
    const items = JSON.parse(require("fs").readFileSync(process.argv[1])).items;
    const ready = items.filter((o) => (o.status.readyReplicas ?? 0) === o.spec.replicas);
    const each = items.map((o) => `${o.metadata.name}=${o.status.readyReplicas ?? 0}/${o.spec.replicas}`).join(" ");
    console.log(`${ready.length}/${items.length} Deployments and StatefulSets ready: ${each}`);
    process.exitCode = ready.length === items.length ? 0 : 1;
  ' "$work/workloads.json" >"$work/ready" || fail "not every workload is ready: $(cat "$work/ready")"
  cat "$work/ready"
}
release_revision() { helm status "$release" --namespace "$namespace" --kube-context "$context" -o json | node -p 'JSON.parse(require("fs").readFileSync(0)).version'; }

step "helm upgrade --install --wait, as make deploy runs it"
upgrade "install"
claim_status=$(k get pvc --namespace "$namespace" -o jsonpath='{range .items[*]}{.metadata.name}={.status.phase} {end}')
ok "claims: $claim_status"
[[ $claim_status != *Pending* && -n $claim_status ]] || fail "a claim is not bound: $claim_status"

# make deploy's shortcut (lib.sh release_is_current): the release runs
# exactly this checkout, rendered against this server, so it is kept.
current() { bash -c 'source scripts/deploy/lib.sh && release_is_current "$@"' release_is_current "$@"; }
if current "${chart_args[@]}" 2>"$work/out"; then
  ok "make deploy's check: the release runs exactly this checkout (a second make deploy keeps it)"
else
  fail "make deploy's check says the release it just installed differs from this checkout (it would upgrade on every run)" "$work/out"
fi
if current "${chart_args[@]}" -f "$chart/values-minimal.yaml" 2>"$work/out"; then
  fail "make deploy's check says another values file is what runs"
fi
ok "make deploy's check: with values-minimal.yaml it would upgrade"

step "The helm test pods (server-side dry run, now that their ServiceAccounts exist)"
for values in "" "${values_files[@]}" "${test_values_files[@]}"; do
  render "$work/rendered.yaml" "$values"
  node scripts/deploy/apiserver-test.mjs tests "$work/rendered.yaml" >"$work/tests.yaml"
  must "the server refused a helm test pod (${values:-default values})" \
    k apply --dry-run=server -f "$work/tests.yaml"
  ok "${values:-default values}: $(grep -c 'server dry run' "$work/out") test pods accepted"
done

# payment_split EXPECTED: every GRPCRoute of payment sends its calls there,
# and they are all the routes proto/mesh.yaml gives payment (one per RPC, and
# the standard one): a route missing from the split keeps its RPC on v1.
payment_split() {
  local expected=$1 lines want got
  lines=$(k get grpcroutes --namespace "$namespace" -o json | node scripts/deploy/apiserver-test.mjs backends payment)
  [[ -n $lines ]] || fail "no GRPCRoute is attached to the payment Service"
  want=$(node scripts/mesh/contract.mjs routes payment | sort | paste -sd ' ' -)
  got=$(cut -d ' ' -f 1 <<<"$lines" | sort | paste -sd ' ' -)
  [[ $got == "$want" ]] || fail "the GRPCRoutes of the payment Service are '$got'; proto/mesh.yaml gives it '$want'"
  while read -r route backends; do
    [[ $backends == "$expected" ]] || fail "GRPCRoute $route sends payment's calls to '$backends', expected '$expected'"
  done <<<"$lines"
  ok "every payment route ($(wc -l <<<"$lines" | tr -d ' ')): $expected"
}

canary() {
  local begun=$SECONDS summary revision
  must "scripts/deploy/canary.sh $*" scripts/deploy/canary.sh "$@"
  grep '^+ helm' "$work/out" | sed 's/^/    /'
  summary=$(ready_summary)
  revision=$(release_revision)
  ok "canary.sh $*: revision $revision, $summary ($((SECONDS - begun))s)"
}

step "make canary WEIGHT=10, make promote, make rollback (scripts/deploy/canary.sh against this server)"
canary set 10
payment_split "payment-v1=90 payment-v2=10"
k get deployment payment-v2 --namespace "$namespace" >/dev/null 2>&1 || fail "make canary left no payment-v2 Deployment"
canary promote
payment_split "payment-v1=0 payment-v2=100"
canary rollback
payment_split "payment"
if k get deployment payment-v2 --namespace "$namespace" >/dev/null 2>&1; then fail "make rollback left payment v2's Deployment"; fi
ok "payment-v2's Deployment removed"

step "Each values file, and back to the defaults"
for values in "${values_files[@]}"; do
  upgrade "upgrade to $values" -f "$values"
  upgrade "back to the defaults"
done

step "Pod settings from values on a tainted node (test/deploy/values/pod-settings.yaml)"
# The taint the value set's tolerations name: from now on only a pod that
# tolerates it is scheduled (NoSchedule leaves the running ones alone). The
# upgrade rolls every Deployment and StatefulSet (their pod annotations
# change), and its wait passes only once each new pod is scheduled and ready.
taint=meshcart.test/dedicated=shop:NoSchedule
must "tainting $fake_node" k taint node "$fake_node" "$taint"
upgrade "upgrade to the pod settings" -f test/deploy/values/pod-settings.yaml
k get pods --namespace "$namespace" -o json >"$work/pods.json"
# shellcheck disable=SC2016 # JavaScript, not shell
node -e '
  const pods = JSON.parse(require("fs").readFileSync(process.argv[1])).items.filter((p) => !p.metadata.deletionTimestamp);
  const wrong = pods.filter((p) => p.spec.nodeName !== process.argv[2] || !(p.spec.tolerations ?? []).some((t) => t.key === "meshcart.test/dedicated")
    || p.spec.nodeSelector?.["kubernetes.io/os"] !== "linux" || !(p.spec.imagePullSecrets ?? []).some((s) => s.name === "registry-shop")
    || p.metadata.annotations?.["linkerd.io/inject"] !== "enabled");
  console.log(`${pods.length} pods scheduled on ${process.argv[2]} despite its taint, each with the tolerations, selector, pull secret and mesh annotations of the values`);
  if (wrong.length > 0 || pods.length === 0) { console.error(`without them: ${wrong.map((p) => p.metadata.name).join(" ") || "(no pods)"}`); process.exitCode = 1; }
' "$work/pods.json" "$fake_node" >"$work/out" 2>&1 || fail "the pod settings did not reach every pod" "$work/out"
ok "$(cat "$work/out")"
must "removing the taint" k taint node "$fake_node" "$taint-"
upgrade "back to the defaults"

step "Uninstall, then install again: the kept Secrets stay and are reused"
secrets() { k get secret postgres storefront-jwt --namespace "$namespace" -o jsonpath='{range .items[*]}{.metadata.name} {.data}{"\n"}{end}'; }
before=$(secrets)
[[ $(wc -l <<<"$before") -eq 2 ]] || fail "expected the Secrets postgres and storefront-jwt, found: $before"
must "helm uninstall" helm uninstall "$release" --namespace "$namespace" --kube-context "$context" --wait --timeout 5m
sed -n '/kept due to the resource policy/,$p' "$work/out" | sed 's/^/    /' 
after_uninstall=$(secrets)
[[ $after_uninstall == "$before" ]] || fail "helm uninstall did not keep the Secrets as they were (helm.sh/resource-policy: keep)"
left=$(k get deployments,statefulsets,services --namespace "$namespace" -o name)
[[ -z $left ]] || fail "helm uninstall left: $left"
ok "uninstalled; kept: Secrets postgres and storefront-jwt, claim $(k get pvc --namespace "$namespace" -o name | tr '\n' ' ')"
upgrade "install again"
[[ "$(secrets)" == "$before" ]] || fail "the reinstalled release changed the kept Secrets: its lookup did not reuse them (the database volume would keep the old passwords)"
ok "the Secrets' data is unchanged: the passwords still match the database volume"

must "helm uninstall" helm uninstall "$release" --namespace "$namespace" --kube-context "$context" --wait --timeout 5m
failed=0
step "API-server tier passed in $((SECONDS - started_at))s"
