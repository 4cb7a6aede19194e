{{/*
Names. Every object is prefixed with the full name, so several releases (and the cluster-scoped
objects they own: ClusterRoles, ClusterRoleBindings) can live side by side.
*/}}
{{- define "webhook-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "webhook-operator.fullname" -}}
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

{{/* Services and label values must stay DNS labels (63 characters) with the suffix. */}}
{{- define "webhook-operator.operatorName" -}}
{{- printf "%s-operator" (include "webhook-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "webhook-operator.deliveryName" -}}
{{- printf "%s-delivery" (include "webhook-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "webhook-operator.portalName" -}}
{{- printf "%s-portal" (include "webhook-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the portal's ticket signing key, created by the portal itself. */}}
{{- define "webhook-operator.portalKeySecret" -}}
{{- printf "%s-portal-ticket-key" (include "webhook-operator.fullname" .) | trunc 253 }}
{{- end }}

{{- define "webhook-operator.leaseName" -}}
{{- default (include "webhook-operator.operatorName" .) .Values.operator.leaseName }}
{{- end }}

{{- define "webhook-operator.deliveryURL" -}}
{{- printf "http://%s.%s.svc:8080" (include "webhook-operator.deliveryName" .) .Release.Namespace }}
{{- end }}

{{- define "webhook-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "webhook-operator.labels" -}}
helm.sh/chart: {{ include "webhook-operator.chart" . }}
{{ include "webhook-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: webhook-operator
{{- end }}

{{- define "webhook-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "webhook-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: call with (dict "ctx" $ "component" "delivery"). */}}
{{- define "webhook-operator.componentLabels" -}}
{{ include "webhook-operator.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "webhook-operator.componentSelector" -}}
{{ include "webhook-operator.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "webhook-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Checks values the schema cannot express; included by every Deployment so `helm template`
and `helm install` stop before anything is applied.
*/}}
{{- define "webhook-operator.validate" -}}
{{- $store := .Values.delivery.store }}
{{- if and (eq $store.type "sqlite") (gt (int .Values.delivery.replicas) 1) }}
{{- fail (printf "delivery.replicas=%d needs a shared database: SQLite is a file on one volume and supports a single replica. Set delivery.store.type=postgresql and delivery.store.postgresql.existingSecret (a Secret holding the PostgreSQL DSN), or keep delivery.replicas=1." (int .Values.delivery.replicas)) }}
{{- end }}
{{- if and (eq $store.type "postgresql") (not $store.postgresql.existingSecret) }}
{{- fail "delivery.store.type=postgresql needs delivery.store.postgresql.existingSecret: the name of a Secret in the release namespace whose key delivery.store.postgresql.secretKey (default dsn) holds the PostgreSQL DSN (postgresql://user:password@host:5432/db)." }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the Deployments: call with (dict "ctx" $ "values" .Values.operator). */}}
{{- define "webhook-operator.podSpecCommon" -}}
{{- $v := .values }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
