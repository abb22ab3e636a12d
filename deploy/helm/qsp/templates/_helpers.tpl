{{/*
qsp.name is the chart name, or nameOverride.
*/}}
{{- define "qsp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
qsp.fullname names every object of the release: fullnameOverride, or the
release name (with the chart name appended unless it already holds it),
cut to the 63 characters Kubernetes names allow.
*/}}
{{- define "qsp.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
qsp.chart is chart name and version, for the helm.sh/chart label.
*/}}
{{- define "qsp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
qsp.selectorLabels are the labels the Deployment/StatefulSet selects its
pods by; they never change between upgrades (selectors are immutable).
*/}}
{{- define "qsp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qsp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
qsp.labels go on every object.
*/}}
{{- define "qsp.labels" -}}
helm.sh/chart: {{ include "qsp.chart" . }}
{{ include "qsp.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: qsp
{{- end }}

{{/*
qsp.serviceAccountName is the service account the pods run as: the
chart's own when serviceAccount.create, else serviceAccount.name (or
"default").
*/}}
{{- define "qsp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "qsp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
qsp.image is repository:tag, or repository@digest when a digest is set.
*/}}
{{- define "qsp.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
qsp.tokensSecret names the Secret of generated tokens.
*/}}
{{- define "qsp.tokensSecret" -}}
{{- printf "%s-tokens" (include "qsp.fullname" .) }}
{{- end }}
