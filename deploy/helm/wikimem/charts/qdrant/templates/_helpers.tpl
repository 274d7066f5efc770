{{- define "qdrant.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-qdrant unless fullnameOverride; the parent chart computes the same name (wikimem.qdrant.fullname). */}}
{{- define "qdrant.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "qdrant.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "qdrant.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qdrant.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "qdrant.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "qdrant.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wikimem
app.kubernetes.io/component: vector-store
{{- with .Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "qdrant.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- printf "%s:%s%s" .Values.image.repository $tag (ternary "-unprivileged" "" (and .Values.image.useUnprivilegedImage (not (hasSuffix "-unprivileged" $tag)))) }}
{{- end }}

{{/* The Secret holding the API key, or "" when Qdrant runs without one. */}}
{{- define "qdrant.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if .Values.apiKey }}
{{- printf "%s-apikey" (include "qdrant.fullname" .) }}
{{- end }}
{{- end }}

{{- define "qdrant.httpPort" -}}
{{- $port := 6333 -}}
{{- range .Values.service.ports }}{{ if eq .name "http" }}{{ $port = .targetPort }}{{ end }}{{ end -}}
{{- $port }}
{{- end }}

{{- define "qdrant.p2pPort" -}}
{{- .Values.config.cluster.p2p.port | default 6335 }}
{{- end }}
