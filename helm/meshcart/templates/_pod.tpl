{{/*
Pod settings from values, one small partial each, for every pod the chart
makes. Each takes (dict "root" $ "values" <the workload's values block>)
and combines the chart-wide value with the workload's own key of the same
name, as values.yaml documents:
  imagePullSecrets, tolerations   the chart's, then the workload's
  nodeSelector, podAnnotations    merged key by key, the workload's win
  affinity                        the workload's when set, else the chart's
Each renders nothing when the result is empty.
*/}}

{{- define "meshcart.imagePullSecrets" -}}
{{- with concat (.root.Values.imagePullSecrets | default list) (.values.imagePullSecrets | default list) | uniq }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "meshcart.nodeSelector" -}}
{{- with merge (deepCopy (.values.nodeSelector | default dict)) (.root.Values.nodeSelector | default dict) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "meshcart.tolerations" -}}
{{- with concat (.root.Values.tolerations | default list) (.values.tolerations | default list) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "meshcart.affinity" -}}
{{- with .values.affinity | default .root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Where a pod runs and what it pulls with: the four above, for a pod spec. */}}
{{- define "meshcart.podScheduling" -}}
{{- include "meshcart.imagePullSecrets" . }}
{{- include "meshcart.nodeSelector" . }}
{{- include "meshcart.tolerations" . }}
{{- include "meshcart.affinity" . }}
{{- end }}

{{/*
A pod's annotations: the chart's own (Linkerd's from
"meshcart.meshAnnotations", and "own": the template's, such as checksums)
and the user's podAnnotations, chart-wide and the workload's.
(dict "root" $ "values" <values block> "workload" "nats" ["own" (dict ...)] ["job" true])

The user's may add annotations, never replace or remove one the chart sets:
linkerd.io/inject and the proxy's settings come from mesh.*, and a pod
that silently left the mesh (or a default-deny policy) would break the
authorization model of proto/mesh.yaml. Such a key fails the render.
*/}}
{{- define "meshcart.podAnnotations" -}}
{{- $chart := merge (include "meshcart.meshAnnotations" (dict "root" .root "workload" .workload "job" .job) | fromYaml) (.own | default dict) -}}
{{- $user := merge (deepCopy (.values.podAnnotations | default dict)) (.root.Values.podAnnotations | default dict) -}}
{{- range $key := keys $user | sortAlpha }}
{{- if hasKey $chart $key }}
{{- fail (printf "podAnnotations: %s is set by the chart on %s's pods (%s); podAnnotations may only add annotations: leave it out (Linkerd's come from the mesh.* values)" $key $.workload (get $chart $key | toString | quote)) }}
{{- end }}
{{- end }}
{{- toYaml (merge $user $chart) }}
{{- end }}
