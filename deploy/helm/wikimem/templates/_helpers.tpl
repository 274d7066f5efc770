{{/* The five services, and the four that keep no state (they get an HPA). */}}
{{- define "wikimem.services" -}}orchestrator embedder memory reranker reader{{- end }}
{{- define "wikimem.stateless" -}}orchestrator embedder reranker reader{{- end }}
{{/* Whom each service calls. */}}
{{- define "wikimem.peersOf.orchestrator" -}}embedder memory reranker reader{{- end }}
{{- define "wikimem.peersOf.memory" -}}embedder{{- end }}
{{- define "wikimem.peersOf.embedder" -}}{{- end }}
{{- define "wikimem.peersOf.reranker" -}}{{- end }}
{{- define "wikimem.peersOf.reader" -}}{{- end }}

{{- define "wikimem.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-wikimem, or the release name alone when it already says wikimem. */}}
{{- define "wikimem.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one service's objects: (dict "root" $ "svc" "embedder") -> <fullname>-embedder */}}
{{- define "wikimem.svcName" -}}
{{- printf "%s-%s" (include "wikimem.fullname" .root) .svc }}
{{- end }}

{{- define "wikimem.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wikimem.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .svc }}
{{- end }}

{{- define "wikimem.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "wikimem.selectorLabels" . }}
app.kubernetes.io/version: {{ include "wikimem.tag" .root | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: wikimem
{{- end }}

{{- define "wikimem.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* <registry>/<prefix><service>:<tag>; a service's image.repository / image.tag override the parts. */}}
{{- define "wikimem.image" -}}
{{- $values := index .root.Values .svc }}
{{- $own := $values.image | default dict }}
{{- $repo := $own.repository | default (printf "%s%s" .root.Values.image.prefix .svc) }}
{{- if .root.Values.image.registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .root.Values.image.registry) $repo }}
{{- end }}
{{- printf "%s:%s" $repo ($own.tag | default (include "wikimem.tag" .root)) }}
{{- end }}

{{/* host:port of a service inside the namespace */}}
{{- define "wikimem.address" -}}
{{- printf "%s:%v" (include "wikimem.svcName" .) (index .root.Values .svc).port }}
{{- end }}

{{/* The sub-charts' object names (they compute the same: <release>-qdrant, <release>-redis). */}}
{{- define "wikimem.qdrant.fullname" -}}
{{- if .Values.qdrant.fullnameOverride }}
{{- .Values.qdrant.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (.Values.qdrant.nameOverride | default "qdrant") | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "wikimem.redis.fullname" -}}
{{- if .Values.redis.fullnameOverride }}
{{- .Values.redis.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (.Values.redis.nameOverride | default "redis") | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* QDRANT_URL for memory */}}
{{- define "wikimem.qdrant.url" -}}
{{- if .Values.memory.qdrant.url }}
{{- .Values.memory.qdrant.url }}
{{- else }}
{{- printf "http://%s:6333" (include "wikimem.qdrant.fullname" .) }}
{{- end }}
{{- end }}

{{/* Secret name and key of the Qdrant API key, as "name/key"; "" when there is none. */}}
{{- define "wikimem.qdrant.secretRef" -}}
{{- if .Values.memory.qdrant.existingSecret }}
{{- printf "%s/%s" .Values.memory.qdrant.existingSecret .Values.memory.qdrant.existingSecretKey }}
{{- else if and .Values.qdrant.enabled (not .Values.memory.qdrant.url) }}
{{- $key := .Values.qdrant.existingSecretKey | default "api-key" }}
{{- if .Values.qdrant.existingSecret }}
{{- printf "%s/%s" .Values.qdrant.existingSecret $key }}
{{- else if .Values.qdrant.apiKey }}
{{- printf "%s-apikey/%s" (include "wikimem.qdrant.fullname" .) $key }}
{{- end }}
{{- end }}
{{- end }}

{{/* Whether the services have a Redis at all. */}}
{{- define "wikimem.redis.configured" -}}
{{- if or .Values.redis.enabled .Values.externalRedis.url .Values.externalRedis.sentinels }}true{{ end }}
{{- end }}

{{/* Secret name/key of the Redis password, "" when none. */}}
{{- define "wikimem.redis.secretRef" -}}
{{- if .Values.redis.enabled }}
{{- if .Values.redis.auth.enabled }}
{{- $key := .Values.redis.auth.existingSecretPasswordKey | default "redis-password" }}
{{- printf "%s/%s" (.Values.redis.auth.existingSecret | default (printf "%s-auth" (include "wikimem.redis.fullname" .))) $key }}
{{- end }}
{{- else if .Values.externalRedis.existingSecret }}
{{- printf "%s/%s" .Values.externalRedis.existingSecret .Values.externalRedis.existingSecretPasswordKey }}
{{- end }}
{{- end }}

{{/* Redis settings (env entries) for the orchestrator and memory: the password first, so that REDIS_URL can use it. */}}
{{- define "wikimem.redis.env" -}}
{{- $secret := include "wikimem.redis.secretRef" . }}
{{- $auth := "" }}
{{- if $secret }}
{{- $auth = ":$(WIKIMEM_REDIS_PASSWORD)@" }}
- name: WIKIMEM_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ first (splitList "/" $secret) }}
      key: {{ last (splitList "/" $secret) }}
{{- end }}
{{- if .Values.redis.enabled }}
{{- $full := include "wikimem.redis.fullname" . }}
{{- $headless := printf "%s-headless" $full }}
{{- if .Values.redis.sentinel.enabled }}
{{- $sentinels := list }}
{{- range $i := until (int .Values.redis.replicaCount) }}
{{- $sentinels = append $sentinels (printf "%s-node-%d.%s:%v" $full $i $headless ($.Values.redis.sentinel.port | default 26379)) }}
{{- end }}
- name: WIKIMEM_REDIS_SENTINELS
  value: {{ join "," $sentinels | quote }}
- name: WIKIMEM_REDIS_MASTER
  value: {{ .Values.redis.sentinel.masterSet | default "mymaster" | quote }}
{{- else }}
- name: REDIS_URL
  value: {{ printf "redis://%s%s-node-0.%s:%v/0" $auth $full $headless (.Values.redis.port | default 6379) | quote }}
{{- end }}
{{- else if .Values.externalRedis.sentinels }}
- name: WIKIMEM_REDIS_SENTINELS
  value: {{ join "," .Values.externalRedis.sentinels | quote }}
- name: WIKIMEM_REDIS_MASTER
  value: {{ .Values.externalRedis.masterSet | quote }}
{{- else if .Values.externalRedis.url }}
{{- $url := .Values.externalRedis.url }}
{{- if and $auth (not (contains "@" $url)) }}
{{- $url = regexReplaceAll "^(rediss?://)" $url (printf "${1}%s" $auth) }}
{{- end }}
- name: REDIS_URL
  value: {{ $url | quote }}
{{- end }}
{{- end }}

{{/* Whether a service's gRPC port speaks TLS: the orchestrator's with public TLS, the others' with internal mTLS
(the orchestrator uses its internal certificate only as a client). */}}
{{- define "wikimem.tlsPort" -}}
{{- if eq .svc "orchestrator" }}{{ if .root.Values.tls.public.enabled }}true{{ end }}
{{- else if .root.Values.tls.internal.enabled }}true{{ end }}
{{- end }}

{{/* The internal TLS Secret of a service: its perService entry, else existingSecret, else <fullname>-internal-tls. */}}
{{- define "wikimem.internalTlsSecret" -}}
{{- $default := .root.Values.tls.internal.existingSecret | default (printf "%s-internal-tls" (include "wikimem.fullname" .root)) }}
{{- index (.root.Values.tls.internal.perService | default dict) .svc | default $default }}
{{- end }}

{{/* Whether a service calls peers (its channels get WIKIMEM_GRPC_LB). */}}
{{- define "wikimem.hasPeers" -}}
{{- if trim (include (printf "wikimem.peersOf.%s" .svc) .root) }}true{{ end }}
{{- end }}

{{/* WIKIMEM_AUTH: what the auth section configures (jwt, apikey or both). */}}
{{- define "wikimem.authModes" -}}
{{- $modes := list }}
{{- if or .Values.auth.jwks.url .Values.auth.jwks.existingSecret }}{{ $modes = append $modes "jwt" }}{{ end }}
{{- if .Values.auth.apiKeys.existingSecret }}{{ $modes = append $modes "apikey" }}{{ end }}
{{- join "," $modes }}
{{- end }}

{{/* WIKIMEM_MEMORY_COORDINATION */}}
{{- define "wikimem.coordination" -}}
{{- $c := .Values.memory.coordination | default "auto" }}
{{- if eq $c "auto" }}
{{- if and (eq .Values.memory.backend "qdrant") (include "wikimem.redis.configured" .) }}redis{{ else }}local{{ end }}
{{- else }}
{{- $c }}
{{- end }}
{{- end }}

{{/* Checks that fail the render with a message that says what to change. */}}
{{- define "wikimem.validate" -}}
{{- $m := .Values.memory }}
{{- if not (has $m.backend (list "qdrant" "edge")) }}
{{- fail (printf "memory.backend=%q must be qdrant or edge" $m.backend) }}
{{- end }}
{{- if eq $m.backend "edge" }}
{{- if gt (int $m.replicaCount) 1 }}
{{- fail "memory.backend=edge keeps its store on one volume: memory.replicaCount must be 1 (use backend=qdrant to scale)" }}
{{- end }}
{{- else }}
{{- if and (not .Values.qdrant.enabled) (not $m.qdrant.url) }}
{{- fail "memory.backend=qdrant needs qdrant.enabled=true or memory.qdrant.url (an external Qdrant)" }}
{{- end }}
{{- if lt (int $m.qdrant.shards) 1 }}
{{- fail "memory.qdrant.shards must be at least 1" }}
{{- end }}
{{- if or (lt (int $m.qdrant.writeConsistencyFactor) 1) (gt (int $m.qdrant.writeConsistencyFactor) (int $m.qdrant.replicationFactor)) }}
{{- fail (printf "memory.qdrant.writeConsistencyFactor (%v) must be between 1 and memory.qdrant.replicationFactor (%v)" $m.qdrant.writeConsistencyFactor $m.qdrant.replicationFactor) }}
{{- end }}
{{- if and .Values.qdrant.enabled (not $m.qdrant.url) (gt (int $m.qdrant.replicationFactor) (int .Values.qdrant.replicaCount)) }}
{{- fail (printf "memory.qdrant.replicationFactor (%v) cannot exceed the Qdrant nodes (qdrant.replicaCount=%v)" $m.qdrant.replicationFactor .Values.qdrant.replicaCount) }}
{{- end }}
{{- if and .Values.qdrant.enabled (gt (int .Values.qdrant.replicaCount) 1) (not .Values.qdrant.config.cluster.enabled) }}
{{- fail "qdrant.replicaCount > 1 needs qdrant.config.cluster.enabled=true (distributed mode)" }}
{{- end }}
{{- end }}
{{- if and .Values.redis.enabled (gt (int .Values.redis.replicaCount) 1) (not .Values.redis.sentinel.enabled) }}
{{- fail "redis.replicaCount > 1 without redis.sentinel.enabled gives replicas that nothing promotes; enable the Sentinels" }}
{{- end }}
{{- if and .Values.tls.public.enabled (not .Values.tls.public.existingSecret) }}
{{- fail "tls.public.enabled needs tls.public.existingSecret (a kubernetes.io/tls Secret: tls.crt, tls.key)" }}
{{- end }}
{{- if and (has .Values.orchestrator.service.type (list "LoadBalancer" "NodePort")) (not .Values.auth.enabled) (not .Values.auth.allowUnauthenticatedExposure) }}
{{- fail (printf "orchestrator.service.type=%s exposes the orchestrator outside the cluster, but auth.enabled=false: every caller would be anonymous and claim any groups. Turn on auth (auth.jwks.url or auth.apiKeys.existingSecret; docs/security.md), or set auth.allowUnauthenticatedExposure=true" .Values.orchestrator.service.type) }}
{{- end }}
{{- if .Values.auth.enabled }}
{{- if not (include "wikimem.authModes" .) }}
{{- fail "auth.enabled needs auth.jwks.url, auth.jwks.existingSecret or auth.apiKeys.existingSecret" }}
{{- end }}
{{- if and .Values.auth.jwks.url .Values.auth.jwks.existingSecret }}
{{- fail "auth.jwks: give url or existingSecret, not both" }}
{{- end }}
{{- if and (contains "jwt" (include "wikimem.authModes" .)) (not (and .Values.auth.jwt.issuer .Values.auth.jwt.audience)) }}
{{- fail "auth with a JWKS needs auth.jwt.issuer and auth.jwt.audience: tokens are checked against both" }}
{{- end }}
{{- end }}
{{- $coord := include "wikimem.coordination" . }}
{{- if not (has $coord (list "redis" "local")) }}
{{- fail (printf "memory.coordination=%q must be auto, redis or local" $coord) }}
{{- end }}
{{- if and (eq $coord "redis") (not (include "wikimem.redis.configured" .)) }}
{{- fail "memory.coordination=redis needs a Redis (redis.enabled or externalRedis)" }}
{{- end }}
{{- if and (eq $coord "redis") (ne $m.backend "qdrant") }}
{{- fail "memory.coordination=redis is for memory.backend=qdrant (the Edge store has one writer)" }}
{{- end }}
{{- if and (gt (int $m.replicaCount) 1) (ne $coord "redis") }}
{{- fail "memory.replicaCount > 1: the replicas must coordinate their writes through Redis (memory.coordination=redis, or auto with a Redis)" }}
{{- end }}
{{- range $svc := splitList " " (include "wikimem.stateless" .) }}
{{- $a := (index $.Values $svc).autoscaling }}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail (printf "%s.autoscaling.minReplicas (%v) exceeds maxReplicas (%v)" $svc $a.minReplicas $a.maxReplicas) }}
{{- end }}
{{- end }}
{{- end }}
