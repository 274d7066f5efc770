{{- define "redis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-redis unless fullnameOverride; the parent chart computes the same name (wikimem.redis.fullname). */}}
{{- define "redis.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "redis.name" .) | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "redis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "redis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wikimem
app.kubernetes.io/component: cache
{{- end }}

{{- define "redis.secretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else }}
{{- printf "%s-auth" (include "redis.fullname" .) }}
{{- end }}
{{- end }}

{{- define "redis.headless" -}}
{{- printf "%s-headless.%s.svc.%s" (include "redis.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "redis.passwordEnv" -}}
{{- if .Values.auth.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "redis.secretName" . }}
      key: {{ .Values.auth.existingSecretPasswordKey }}
# redis-cli reads the password from here (probes, the start scripts' questions to the Sentinels)
- name: REDISCLI_AUTH
  valueFrom:
    secretKeyRef:
      name: {{ include "redis.secretName" . }}
      key: {{ .Values.auth.existingSecretPasswordKey }}
{{- end }}
{{- end }}

{{- define "redis.env" -}}
- name: REDIS_NODE_PREFIX
  value: {{ printf "%s-node" (include "redis.fullname" .) }}
- name: REDIS_HEADLESS
  value: {{ include "redis.headless" . }}
- name: REDIS_NODES
  value: {{ .Values.replicaCount | quote }}
- name: REDIS_PORT
  value: {{ .Values.port | quote }}
- name: REDIS_DIR
  value: /data
- name: SENTINEL_ENABLED
  value: {{ ternary "1" "0" .Values.sentinel.enabled | quote }}
- name: SENTINEL_PORT
  value: {{ .Values.sentinel.port | quote }}
- name: SENTINEL_MASTER
  value: {{ .Values.sentinel.masterSet | quote }}
- name: SENTINEL_QUORUM
  value: {{ .Values.sentinel.quorum | quote }}
- name: SENTINEL_DOWN_AFTER_MS
  value: {{ .Values.sentinel.downAfterMilliseconds | quote }}
- name: SENTINEL_FAILOVER_TIMEOUT_MS
  value: {{ .Values.sentinel.failoverTimeout | quote }}
- name: SENTINEL_PARALLEL_SYNCS
  value: {{ .Values.sentinel.parallelSyncs | quote }}
{{- include "redis.passwordEnv" . }}
{{- end }}
