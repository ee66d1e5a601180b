{{/* Name of the chart, for labels. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: the release name, with the chart name unless it holds it. */}}
{{- define "sluice.fullname" -}}
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

{{- define "sluice.operatorName" -}}
{{- printf "%s-operator" (include "sluice.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Pods the operator's objects select. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "sluice.labels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sluice
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
Everything the operator does through the API, and nothing more (see
operator/src/{runtime,leader,context}.rs, cluster/mod.rs, topic/mod.rs). Verified by
operator/tests/install_manifests.rs, which runs the operator with only these rules.
*/}}
{{- define "sluice.operatorRules" -}}
# Clusters, Topics and ConsumerGroups: watched; Topics and ConsumerGroups carry the
# operator's finalizer (a patch).
- apiGroups: [sluice.dev]
  resources: [clusters]
  verbs: [get, list, watch]
- apiGroups: [sluice.dev]
  resources: [topics]
  verbs: [get, list, watch, patch]
# Topics Kafka clients ask for, when a Cluster opts in to auto.create.topics.enable.
- apiGroups: [sluice.dev]
  resources: [topics]
  verbs: [create]
- apiGroups: [sluice.dev]
  resources: [consumergroups]
  verbs: [list, watch, patch]
# Status is written with merge patches.
- apiGroups: [sluice.dev]
  resources: [clusters/status, topics/status, consumergroups/status]
  verbs: [patch]
# A Cluster's children are server-side applied (patch; create when new) and watched.
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services, configmaps, serviceaccounts]
  verbs: [list, watch, create, patch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [list, watch, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [create, patch]
# Broker Leases are watched; the operator's own Lease (leader election) is got,
# created and patched. `update` is not used but the brokers' Role grants it, and
# Kubernetes lets the operator grant only what it holds itself.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update, patch]
# Events about Clusters, Topics and ConsumerGroups (events.k8s.io/v1; a repeat is a patch).
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
