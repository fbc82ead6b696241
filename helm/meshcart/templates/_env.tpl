{{/*
The environment of a meshcart service's container: what every service
reads, then its own ("meshcart.env.<service>"), then the user's extraEnv
(services.extraEnv, then <service>.extraEnv; the same name twice: the
service's wins). Every variable the chart sets is one the service reads
(its config schema; test/deploy/chart.test.ts checks), or a standard
OTEL_* variable services/lib/src/telemetry.ts reads.
(dict "root" $ "workload" <an entry of "meshcart.workloads"> "values" <its values block>)

The extras come last, so they may refer to the chart's as $(NAME); none
may have the name of one the chart sets: Kubernetes would keep both and
the later would silently win, so a value of the chart (services.logLevel
for LOG_LEVEL, ...) would say one thing and the pod do another. Such a
name fails the render.
*/}}
{{- define "meshcart.env" -}}
{{- $chart := concat (include "meshcart.env.common" . | fromYamlArray) (include (printf "meshcart.env.%s" .workload.service) . | fromYamlArray) -}}
{{- $set := dict -}}
{{- range $chart }}{{ $_ := set $set .name true }}{{ end -}}
{{- $extra := list -}}
{{- $names := list -}}
{{- range concat (.root.Values.services.extraEnv | default list) (.values.extraEnv | default list) | reverse }}
{{- if hasKey $set .name }}
{{- fail (printf "extraEnv: %s of %s is set by the chart (from its values: see helm/meshcart/README.md's values table); set that value instead" .name $.workload.service) }}
{{- end }}
{{- if not (has .name $names) }}
{{- $names = append $names .name }}
{{- $extra = prepend $extra . }}
{{- end }}
{{- end }}
{{- toYaml (concat $chart $extra) }}
{{- end }}

{{/* What every meshcart service reads. */}}
{{- define "meshcart.env.common" -}}
{{- $root := .root -}}
{{- $svc := $root.Values.services -}}
{{- /* V8's heap below the container's memory limit (meshcart.nodeOptions). */ -}}
- name: NODE_OPTIONS
  value: {{ include "meshcart.nodeOptions" (.values.resources | default $svc.resources) | quote }}
- name: GRPC_PORT
  value: {{ $svc.grpcPort | quote }}
- name: ADMIN_PORT
  value: {{ $svc.adminPort | quote }}
- name: LOG_LEVEL
  value: {{ $svc.logLevel | quote }}
- name: SERVICE_VERSION
  value: {{ .workload.version | quote }}
- name: DEPLOYMENT_ENVIRONMENT
  value: {{ $svc.environment | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: SHUTDOWN_DRAIN_DELAY_MS
  value: {{ $svc.shutdown.drainDelayMs | quote }}
- name: SHUTDOWN_TIMEOUT_MS
  value: {{ $svc.shutdown.timeoutMs | quote }}
{{- if .workload.faults }}
- name: FAULT_CONTROL_PORT
  value: {{ $svc.faultControlPort | quote }}
{{- end }}
{{- if .workload.database }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: postgres
      key: {{ .workload.service }}-database-url
{{- end }}
{{- if $root.Values.tracing.enabled }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ include "meshcart.otlpEndpoint" $root | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: grpc
{{- end }}
{{- end }}

{{/* The storefront's key (and its default issuer and audience), from the generated Secret. */}}
{{- define "meshcart.env.jwtSecret" -}}
- name: STOREFRONT_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: storefront-jwt
      key: secret
{{- end }}

{{/* The edge: every service it composes. */}}
{{- define "meshcart.env.storefront" -}}
{{- $root := .root -}}
{{- range $name := list "order" "inventory" "payment" "fulfillment" }}
- name: {{ upper $name }}_ADDRESS
  value: {{ include "meshcart.address" (dict "root" $root "name" $name) | quote }}
{{- end }}
{{ include "meshcart.env.jwtSecret" . }}
{{- end }}

{{/* The saga's participants, and the broker its outbox relay publishes the order events to. */}}
{{- define "meshcart.env.order" -}}
{{- $root := .root -}}
{{- range $name := list "inventory" "payment" }}
- name: {{ upper $name }}_ADDRESS
  value: {{ include "meshcart.address" (dict "root" $root "name" $name) | quote }}
{{- end }}
- name: ORDER_CLIENT_RETRIES
  value: {{ .values.clientRetries | quote }}
- name: NATS_URL
  value: {{ include "meshcart.natsUrl" $root | quote }}
{{- end }}

{{/* Payment reads only what every service reads. */}}
{{- define "meshcart.env.payment" -}}
{{- end }}

{{- define "meshcart.env.inventory" -}}
- name: INVENTORY_SEED_CATALOGUE
  value: {{ .values.seedCatalogue | quote }}
{{- end }}

{{/* The broker it consumes the order events from, and its timers. */}}
{{- define "meshcart.env.fulfillment" -}}
- name: NATS_URL
  value: {{ include "meshcart.natsUrl" .root | quote }}
- name: FULFILLMENT_PACK_AFTER_MS
  value: {{ .values.packAfterMs | quote }}
- name: FULFILLMENT_SHIP_AFTER_MS
  value: {{ .values.shipAfterMs | quote }}
- name: FULFILLMENT_MAX_DELIVERIES
  value: {{ .values.maxDeliveries | quote }}
{{- end }}

{{/*
Shoppers through the storefront, with tokens its key accepts; restocks
straight to inventory, as an operator.
*/}}
{{- define "meshcart.env.loadgen" -}}
- name: STOREFRONT_ADDRESS
  value: {{ include "meshcart.address" (dict "root" .root "name" "storefront") | quote }}
- name: INVENTORY_ADDRESS
  value: {{ include "meshcart.address" (dict "root" .root "name" "inventory") | quote }}
{{ include "meshcart.env.jwtSecret" . }}
- name: LOADGEN_RPS
  value: {{ .values.rps | quote }}
- name: LOADGEN_DURATION
  value: {{ .values.duration | quote }}
- name: LOADGEN_SHOPPERS
  value: {{ .values.shoppers | quote }}
- name: LOADGEN_MIX
  value: {{ .values.mix | quote }}
- name: LOADGEN_RESTOCK
  value: {{ .values.restock | quote }}
- name: LOADGEN_RESTOCK_RETRIES
  value: {{ .values.restockRetries | quote }}
{{- end }}
