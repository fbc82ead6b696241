{{/*
Shared names, labels and pod fragments. Object names are fixed (one release
per namespace), so that documentation and commands can name them:
deploy/order, svc/payment-v1, ...
*/}}

{{/* Labels every object of the release carries. */}}
{{- define "meshcart.labels" -}}
app.kubernetes.io/part-of: meshcart
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
Selector labels of a component: (dict "root" $ "name" "order" ["version" "v1"]).
Object names are fixed, one release per namespace, so the release's name
(in "meshcart.labels") is not needed to tell pods apart.
*/}}
{{- define "meshcart.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
{{- with .version }}
version: {{ . }}
{{- end }}
{{- end }}

{{/*
The meshcart workloads: one entry per Deployment, in the order they are
rendered. `service` is the gRPC service (and ServiceAccount: the mesh
identity, which payment's versions share) and names its values block;
`database`: it owns one (DATABASE_URL); `faults`: it serves the
fault-control endpoint (FAULT_CONTROL_PORT, container port faults);
`api`: others call its gRPC API, through a Service of its name (and of the
workload's, where the two differ: payment-v1, payment-v2).
*/}}
{{- define "meshcart.workloads" -}}
{{- $v := .Values -}}
storefront: {service: storefront, version: v1, replicas: {{ $v.storefront.replicas }}, database: false, faults: false, api: true}
order: {service: order, version: v1, replicas: {{ $v.order.replicas }}, database: true, faults: false, api: true}
payment-v1: {service: payment, version: v1, replicas: {{ $v.payment.v1.replicas }}, database: true, faults: true, api: true}
{{- if $v.payment.v2.enabled }}
payment-v2: {service: payment, version: v2, replicas: {{ $v.payment.v2.replicas }}, database: true, faults: true, api: true}
{{- end }}
inventory: {service: inventory, version: v1, replicas: {{ $v.inventory.replicas }}, database: true, faults: true, api: true}
fulfillment: {service: fulfillment, version: v1, replicas: {{ $v.fulfillment.replicas }}, database: true, faults: false, api: true}
{{- if $v.loadgen.enabled }}
loadgen: {service: loadgen, version: v1, replicas: {{ $v.loadgen.replicas }}, database: false, faults: false, api: false}
{{- end }}
{{- end }}

{{/* The services that own a database (Postgres creates one role and database each). */}}
{{- define "meshcart.databaseServices" -}}
[inventory, payment, order, fulfillment]
{{- end }}

{{/* The broker's client URL (NATS_URL of order and fulfillment). */}}
{{- define "meshcart.natsUrl" -}}
nats://nats.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:4222
{{- end }}

{{/* A service's in-cluster gRPC address: (dict "root" $ "name" "order"). */}}
{{- define "meshcart.address" -}}
{{ .name }}.{{ .root.Release.Namespace }}.svc.{{ .root.Values.clusterDomain }}:{{ .root.Values.services.grpcPort }}
{{- end }}

{{/* A meshcart image: (dict "root" $ "service" "order"). The tag is content-derived and required. */}}
{{- define "meshcart.image" -}}
{{- $values := index .root.Values .service -}}
{{- $tag := required (printf "%s.image.tag is required: `make deploy` sets it from the image's content (node scripts/deploy/image-tag.mjs --values)" .service) $values.image.tag -}}
{{ .root.Values.image.repository }}/{{ .service }}:{{ $tag }}
{{- end }}

{{/*
Pod annotations for Linkerd: injection, the default inbound policy, the
proxy's resources and the name its spans go under:
(dict "root" $ "workload" "payment-v1" ["job" true]).

The proxy's spans take their service.name from the injector, which sets
it from the pod's app.kubernetes.io/instance label (the release: the same
for every pod), else app.kubernetes.io/name (payment for both versions),
and lets the annotation resource.opentelemetry.io/service.name override
both (linkerd2 version-2.20, pkg/inject/inject.go ApplyAnnotationOverrides;
the proxy gets it as LINKERD2_PROXY_TRACE_EXTRA_ATTRIBUTES, which outranks
LINKERD2_PROXY_TRACE_SERVICE_NAME and the pod's labels: linkerd2-proxy
release/v2.359.0, linkerd/app/src/env/trace.rs). So each workload's proxy
gets its own: <workload>-proxy, apart from the app's own spans.

A pod that must run to completion ("job") asks for the proxy as a native
sidecar itself (config.linkerd.io/proxy-enable-native-sidecar, the
annotation pkg/k8s/labels.go names at version-2.20) rather than relying on
the control plane's proxy.nativeSidecar default: a classic sidecar keeps
the pod Running after its test ends.
*/}}
{{- define "meshcart.meshAnnotations" -}}
{{- $values := .root.Values -}}
{{- if $values.mesh.inject -}}
linkerd.io/inject: enabled
config.linkerd.io/default-inbound-policy: {{ $values.mesh.defaultInboundPolicy }}
config.linkerd.io/proxy-cpu-request: {{ $values.mesh.proxy.cpuRequest | quote }}
config.linkerd.io/proxy-memory-request: {{ $values.mesh.proxy.memoryRequest | quote }}
config.linkerd.io/proxy-memory-limit: {{ $values.mesh.proxy.memoryLimit | quote }}
resource.opentelemetry.io/service.name: {{ printf "%s-proxy" (required "meshcart.meshAnnotations: name the workload" .workload) | quote }}
{{- if .job }}
config.linkerd.io/proxy-enable-native-sidecar: "true"
{{- end }}
{{- else -}}
linkerd.io/inject: disabled
{{- end }}
{{- end }}

{{/* Pod-level security: a numeric non-root user, the runtime's default seccomp profile. */}}
{{- define "meshcart.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
{{- with .fsGroup }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security, the same for every container of the chart. */}}
{{- define "meshcart.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* terminationGracePeriodSeconds: above the drain delay plus the shutdown timeout. */}}
{{- define "meshcart.terminationGracePeriodSeconds" -}}
{{- $s := .Values.services.shutdown -}}
{{ add (div (add $s.drainDelayMs $s.timeoutMs 999) 1000) 10 }}
{{- end }}

{{/* Viz's Prometheus URL, unless grafana.prometheusUrl names another. */}}
{{- define "meshcart.prometheusUrl" -}}
{{- .Values.grafana.prometheusUrl | default (printf "http://prometheus.%s.svc.%s:9090" .Values.mesh.vizNamespace .Values.clusterDomain) -}}
{{- end }}

{{/* The OTLP endpoint the services export to (Jaeger's gRPC receiver). */}}
{{- define "meshcart.otlpEndpoint" -}}
http://jaeger-collector.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:4317
{{- end }}

{{/*
The backends of every payment route (mesh-routes.yaml): while payment v2
runs, each route splits between the version Services by
payment.canary.weight, so that a call lands on the same version whatever
its method. Without v2, no backendRefs: the parent Service itself.
*/}}
{{- define "meshcart.canaryBackends" -}}
{{- if .Values.payment.v2.enabled -}}
{{- $weight := int .Values.payment.canary.weight -}}
backendRefs:
  - name: payment-v1
    port: {{ .Values.services.grpcPort }}
    weight: {{ sub 100 $weight }}
  - name: payment-v2
    port: {{ .Values.services.grpcPort }}
    weight: {{ $weight }}
{{- end }}
{{- end }}

{{/*
NODE_OPTIONS of a service container, from its resources: V8's old space
sized from the memory limit, so that V8 collects garbage before the
kernel's OOM killer ends the pod. Left to itself, Node 24 sized its heap
to 259 MiB inside a 256Mi cgroup, above the limit. Half the limit is the
old space; the other half is for what --max-old-space-size does not bound:
the young generation, code, and Node's native memory (gRPC and pg
buffers, the span export queue). make bench's memory step runs each
service under exactly this (it renders the chart) and reports the
headroom. Limits in Mi or Gi.
*/}}
{{- define "meshcart.nodeOptions" -}}
{{- $limit := toString (required "a meshcart service needs resources.limits.memory: Node's heap is sized from it" .limits.memory) -}}
{{- $mib := 0 -}}
{{- if hasSuffix "Gi" $limit -}}
{{- $mib = mul (trimSuffix "Gi" $limit | atoi) 1024 -}}
{{- else if hasSuffix "Mi" $limit -}}
{{- $mib = trimSuffix "Mi" $limit | atoi -}}
{{- else -}}
{{- fail (printf "memory limit %s: write it in Mi or Gi, so that the chart can size Node's heap from it" $limit) -}}
{{- end -}}
--max-old-space-size={{ div $mib 2 }}
{{- end }}
