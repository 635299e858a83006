{{/*
Helpers of the sidecar and gateway topologies. Their objects are those of deploy/kustomize/overlays/*
(test/helm-topologies.test.ts compares them); the big files come from files/ (byte-identical copies of
the kustomize sources, checked by the same test).
*/}}

{{- define "tw.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tokenwarden
{{- end }}

{{- define "tw.slug" -}}
{{ .slug | default (replace "." "-" .name) }}
{{- end }}

{{- define "tw.redisUrl" -}}
{{- if .Values.redis.url -}}
{{ .Values.redis.url }}
{{- else if .Values.redis.enabled -}}
{{ printf "redis://%s-redis:6379" .Release.Name }}
{{- else -}}
{{ fail "redis.enabled is false: set redis.url to an external Redis (redis://, rediss://, redis+sentinel://, redis+cluster://)" }}
{{- end }}
{{- end }}

{{- define "tw.envoyYaml" -}}
{{ .Values.envoy.config | default (.Files.Get (printf "files/envoy-%s%s.yaml" .Values.topology (ternary "-ratelimit" "" .Values.rateLimit.enabled))) }}
{{- end }}

{{- define "tw.rateLimitRules" -}}
{{ .Values.rateLimit.rules | default (.Files.Get "files/ratelimit.yaml") }}
{{- end }}

{{/* With rateLimit.enabled: the rules directory for the tokenwarden container (deploy/kustomize/components/ratelimit). */}}
{{- define "tw.rateLimitEnv" -}}
{{- if .Values.rateLimit.enabled }}
- { name: TOKENWARDEN_RATELIMIT_CONFIG, value: /etc/ratelimit }
{{- end }}
{{- end }}
{{- define "tw.rateLimitMount" -}}
{{- if .Values.rateLimit.enabled }}
- { name: ratelimit-rules, mountPath: /etc/ratelimit, readOnly: true }
{{- end }}
{{- end }}
{{- define "tw.rateLimitVolume" -}}
{{- if .Values.rateLimit.enabled }}
- name: ratelimit-rules
  configMap: { name: {{ .Release.Name }}-ratelimit }
{{- end }}
{{- end }}

{{- define "tw.limitsYaml" -}}
{{ .Values.limitsYaml | default (.Files.Get "files/limits.yaml") }}
{{- end }}

{{/* Generated like kustomize's configMapGenerator: a content hash in the name rolls the pods on edit. */}}
{{- define "tw.envoyConfigMap" -}}
{{ printf "envoy-%s" (printf "%s\n%s" (include "tw.envoyYaml" .) (.Files.Get "files/usage.lua") | sha256sum | trunc 10) }}
{{- end }}

{{- define "tw.pullPolicy" -}}
{{- with . }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end }}

{{- define "tw.containerSecurity" -}}
runAsNonRoot: true
{{- with .uid }}
runAsUser: {{ . }}
runAsGroup: {{ . }}
{{- end }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: { drop: [ALL] }
seccompProfile: { type: RuntimeDefault }
{{- end }}

{{/* The Envoy and tokenwarden containers (deploy/kustomize/components/proxy/proxy.yaml). */}}
{{- define "tw.proxyContainers" -}}
- name: envoy
  image: {{ .Values.envoy.image }}
  {{- include "tw.pullPolicy" .Values.envoy.pullPolicy | nindent 2 }}
  command: [envoy]
  {{- /* --concurrency: one worker per CPU of Envoy's limit (deploy/kustomize/components/proxy/proxy.yaml says why). */}}
  args: [-c, /etc/envoy/envoy.yaml, --disable-hot-restart, --drain-time-s, "30", --drain-strategy, immediate, --concurrency, "1"]
  ports:
    - { name: envoy-http, containerPort: 10000 }
  readinessProbe:
    tcpSocket: { port: envoy-http }
    periodSeconds: 5
  livenessProbe:
    tcpSocket: { port: envoy-http }
    periodSeconds: 15
  lifecycle:
    preStop:
      exec:
        command:
          - /bin/bash
          - -c
          - >-
            ( exec 3<>/dev/tcp/127.0.0.1/9901 &&
            printf 'POST /drain_listeners?graceful HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' >&3 &&
            timeout 5 cat <&3 >/dev/null ) ; sleep 40
  resources:
    {{- toYaml .Values.envoy.resources | nindent 4 }}
  securityContext:
    {{- include "tw.containerSecurity" (dict "uid" 10101) | nindent 4 }}
  volumeMounts:
    - { name: envoy-config, mountPath: /etc/envoy, readOnly: true }
- name: tokenwarden
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
  {{- include "tw.pullPolicy" .Values.image.pullPolicy | nindent 2 }}
  args: [--grpc-addr, 127.0.0.1:9001, --http-addr, 0.0.0.0:8080, --kube, --configmap, {{ printf "%s-limits" .Release.Name | quote }}, --store, {{ .Values.store | quote }}]
  env:
    {{- include "tw.rateLimitEnv" . | nindent 4 }}
    - { name: TOKENWARDEN_REDIS_URL, value: {{ include "tw.redisUrl" . | quote }} }
    - name: POD_NAME
      valueFrom: { fieldRef: { fieldPath: metadata.name } }
    - name: TOKENWARDEN_NAMESPACE
      valueFrom: { fieldRef: { fieldPath: metadata.namespace } }
    - { name: TOKENWARDEN_CACHE_DIR, value: /var/cache/tokenwarden }
    {{- include "tw.hfTokenEnv" . | nindent 4 }}
  ports:
    - { name: tw-http, containerPort: 8080 }
  readinessProbe:
    httpGet: { path: /readyz, port: tw-http }
    periodSeconds: 5
  livenessProbe:
    httpGet: { path: /healthz, port: tw-http }
    periodSeconds: 10
  lifecycle:
    preStop:
      exec: { command: [sleep, "50"] }
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- include "tw.containerSecurity" (dict "uid" 1000) | nindent 4 }}
  volumeMounts:
    {{- include "tw.rateLimitMount" . | nindent 4 }}
    - { name: tokenwarden-cache, mountPath: /var/cache/tokenwarden }
    - { name: kube-api-access, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true }
{{- end }}

{{/* HF_TOKEN from the optional Secret vLLM reads too: tokenwarden downloads hub tokenizers (korean-llama's). */}}
{{- define "tw.hfTokenEnv" -}}
- name: HF_TOKEN
  valueFrom: { secretKeyRef: { name: {{ .Values.vllm.hfTokenSecret.name }}, key: {{ .Values.vllm.hfTokenSecret.key }}, optional: true } }
{{- end }}

{{/* NetworkPolicy peers from values; an empty list would admit every source, so it is refused. */}}
{{- define "tw.peers" -}}
{{- $peers := index .root.Values.networkPolicy .key }}
{{- if not $peers }}
{{- fail (printf "networkPolicy.%s is empty: a NetworkPolicy rule without peers admits every source" .key) }}
{{- end }}
{{- toYaml $peers }}
{{- end }}

{{- define "tw.proxyVolumes" -}}
{{- include "tw.rateLimitVolume" . }}
- name: envoy-config
  configMap: { name: {{ include "tw.envoyConfigMap" . }} }
- name: tokenwarden-cache
  emptyDir: { sizeLimit: 256Mi }
# What the kubelet would automount, for the tokenwarden container only.
- name: kube-api-access
  projected:
    sources:
      - serviceAccountToken: { path: token, expirationSeconds: 3607 }
      - configMap:
          name: kube-root-ca.crt
          items: [{ key: ca.crt, path: ca.crt }]
      - downwardAPI:
          items:
            - path: namespace
              fieldRef: { apiVersion: v1, fieldPath: metadata.namespace }
{{- end }}

{{/* Refuse settings that would break the wiring the kustomize tests check. */}}
{{- define "tw.validate" -}}
{{- if not (has .Values.topology (list "sidecar" "gateway" "central")) }}
{{- fail (printf "topology must be sidecar, gateway or central, not %q" .Values.topology) }}
{{- end }}
{{- if .Values.rateLimit.enabled }}
{{- $rules := fromYaml (include "tw.rateLimitRules" .) }}
{{- if or (hasKey $rules "Error") (not $rules.domain) }}{{ fail "rateLimit.rules: not a rules file with a domain (envoyproxy/ratelimit's format)" }}{{ end }}
{{- if and (ne .Values.topology "central") (not (contains (printf "domain: %s\n" $rules.domain) (include "tw.envoyYaml" .))) }}
{{- fail (printf "rateLimit.rules: domain %s, but envoy.yaml has no ratelimit filter asking in it" $rules.domain) }}
{{- end }}
{{- end }}
{{- if ne .Values.topology "central" }}
{{- $limits := fromYaml (include "tw.limitsYaml" .) }}
{{- if hasKey $limits "Error" }}{{ fail (printf "limitsYaml: %s" $limits.Error) }}{{ end }}
{{- $envoy := include "tw.envoyYaml" . }}
{{- range .Values.models }}
{{- $m := index ($limits.models | default dict) .name }}
{{- if not $m }}
{{- fail (printf "model %s: tokenwarden's limits (limitsYaml) do not list it" .name) }}
{{- end }}
{{- if ne (int .maxModelLen) (int ($m.maxModelLen | default 0)) }}
{{- fail (printf "model %s: maxModelLen %v, but tokenwarden's limits say %v" .name .maxModelLen $m.maxModelLen) }}
{{- end }}
{{- if and (eq $.Values.topology "gateway") (not (contains (printf "address: vllm-%s," (include "tw.slug" .)) $envoy)) }}
{{- fail (printf "model %s: the gateway's envoy.yaml has no cluster on vllm-%s; render one from envoy/envoy.yaml and set envoy.config" .name (include "tw.slug" .)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
