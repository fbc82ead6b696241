{{- /*
A `helm test` pod: the storefront image runs one program of
files/helm-test. Meshed like the services, so its calls take the same path
as theirs; its proxy runs as a native sidecar (annotated, not left to the
control plane's default), which lets the pod complete.
(dict "root" $ "name" "meshcart-test-health" "args" (list ...) "env" <yaml>)
*/ -}}
{{- define "meshcart.testPod" -}}
{{- $root := .root -}}
apiVersion: v1
kind: Pod
metadata:
  name: {{ .name }}
  labels:
    {{- include "meshcart.labels" $root | nindent 4 }}
    app.kubernetes.io/name: meshcart-test
  annotations:
    {{- $own := dict "helm.sh/hook" "test" "helm.sh/hook-delete-policy" "before-hook-creation,hook-succeeded" }}
    {{- include "meshcart.podAnnotations" (dict "root" $root "values" $root.Values.tests "workload" .name "job" true "own" $own) | nindent 4 }}
spec:
  restartPolicy: Never
  serviceAccountName: meshcart-test
  automountServiceAccountToken: false
  securityContext:
    {{- include "meshcart.podSecurityContext" (dict "uid" 10001) | nindent 4 }}
  {{- with include "meshcart.podScheduling" (dict "root" $root "values" $root.Values.tests) }}
  {{- . | nindent 2 }}
  {{- end }}
  containers:
    - name: test
      image: {{ include "meshcart.image" (dict "root" $root "service" "storefront") }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command: [node, {{ printf "helm-test/%s" .script | quote }}]
      args:
        {{- toYaml .args | nindent 8 }}
      {{- with .env }}
      env:
        {{- . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml $root.Values.tests.resources | nindent 8 }}
      securityContext:
        {{- include "meshcart.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        - name: scripts
          mountPath: /app/helm-test
          readOnly: true
  volumes:
    - name: scripts
      configMap:
        name: meshcart-test-scripts
{{- end }}
