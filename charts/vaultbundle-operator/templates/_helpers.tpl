{{/* Chart name, truncated to a DNS label. */}}
{{- define "vaultbundle.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "vaultbundle.fullname" -}}
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

{{- define "vaultbundle.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vaultbundle.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vaultbundle.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vaultbundle.labels" -}}
helm.sh/chart: {{ include "vaultbundle.chart" . }}
{{ include "vaultbundle.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: vaultbundle
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "vaultbundle.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vaultbundle.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vaultbundle.digestKeySecretName" -}}
{{- default (printf "%s-digest-key" (include "vaultbundle.fullname" .)) .Values.digestKey.existingSecret }}
{{- end }}

{{- define "vaultbundle.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The namespaces the operator watches, as a JSON list: empty = every namespace (clusterWide), else watchNamespaces,
else only the release namespace (the default: nothing cluster-wide on Secrets unless asked for).
*/}}
{{- define "vaultbundle.watchNamespaces" -}}
{{- if and .Values.clusterWide .Values.watchNamespaces }}
{{- fail "clusterWide=true and watchNamespaces are exclusive: pick one (watchNamespaces for a Role per namespace, clusterWide for one ClusterRole on every namespace)" }}
{{- end }}
{{- if .Values.clusterWide }}[]
{{- else if .Values.watchNamespaces }}{{ toJson .Values.watchNamespaces }}
{{- else }}{{ list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/* The namespaced rules the operator needs, shared by the ClusterRole and the per-namespace Roles. */}}
{{- define "vaultbundle.rules" -}}
# Secrets. RBAC cannot grant by label, so these verbs cover every Secret in scope (a Role's namespace, or all
# of them with clusterWide); the operator itself only lists/watches with a label selector (below).
# get: read the two source Secrets (config blob, passphrase) by name on every refresh, and the target Secret
# before writing (ownership check, diff).
# list+watch: two label-selected, metadata-only watches: our target Secrets
# (app.kubernetes.io/managed-by=vaultbundle) and source Secrets labelled vaultbundle.io/source=true (instant
# resync on rotation). The apiserver has no verb for "watch with this selector only".
# patch: the target Secret is written with server-side apply (field manager vaultbundle).
# create: an apply PATCH that creates a missing Secret is also authorized as `create` (without it the apiserver
# answers 403 "cannot create resource secrets"; tests/e2e/test_chart_rbac.py proves both ways).
# delete: a Secret's type is immutable, so a changed spec type deletes and re-applies the target Secret.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
# ConfigMaps, read only. get: a dotsec source's `.sec` text and a spec.schema, by name on every refresh.
# list+watch: one label-selected, metadata-only watch of ConfigMaps labelled vaultbundle.io/source=true
# (instant resync when the committed file changes). Nothing is ever written to a ConfigMap.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
# VaultBundles. list+watch: kopf's watch stream reads them; a list before adopting a Secret finds every source Secret.
# get: before a drift repair recreates a deleted Secret, the owner is read to see it is not being deleted.
- apiGroups: [vaultbundle.io]
  resources: [vaultbundles]
  verbs: [get, list, watch]
# VaultBundle status: the outcome of every sync is a merge PATCH of the status subresource.
- apiGroups: [vaultbundle.io]
  resources: [vaultbundles/status]
  verbs: [patch]
# Events (core v1, what kopf.info/kopf.warn post): Applied, RollbackRefused, failures.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.rbac.rolloutRestart }}
# Workloads (rbac.rolloutRestart): spec.rolloutRestartTargets restarts them with a strategic merge patch of one pod
# template annotation (vaultbundle.io/restartedAt); nothing is read. Without it those restarts report Forbidden.
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [patch]
{{- end }}
{{- end }}
