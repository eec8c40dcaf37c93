{{/* The chart's name, overridable. */}}
{{- define "servicegraph.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: the prefix of every object's name. A release named like the chart
(or containing its name) is not repeated.
*/}}
{{- define "servicegraph.fullname" -}}
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

{{- define "servicegraph.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "servicegraph.labels" -}}
helm.sh/chart: {{ include "servicegraph.chart" . }}
{{ include "servicegraph.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: servicegraph
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator's pods: never change them in an upgrade. */}}
{{- define "servicegraph.selectorLabels" -}}
app.kubernetes.io/name: {{ include "servicegraph.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "servicegraph.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "servicegraph.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "servicegraph.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* "true" when the operator watches only the namespaces in watchNamespaces. */}}
{{- define "servicegraph.namespaced" -}}
{{- if .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{/* "true" when replicas elect the active one through Kopf peering. */}}
{{- define "servicegraph.peering" -}}
{{- if kindIs "bool" .Values.peering.enabled }}
{{- if .Values.peering.enabled }}true{{ end }}
{{- else if gt (int .Values.replicaCount) 1 }}true
{{- end }}
{{- end }}

{{- define "servicegraph.peeringName" -}}
{{- default (include "servicegraph.fullname" .) .Values.peering.name }}
{{- end }}

{{/* "true" when a PodDisruptionBudget is wanted. */}}
{{- define "servicegraph.pdb" -}}
{{- if kindIs "bool" .Values.podDisruptionBudget.enabled }}
{{- if .Values.podDisruptionBudget.enabled }}true{{ end }}
{{- else if gt (int .Values.replicaCount) 1 }}true
{{- end }}
{{- end }}

{{/* The job label Prometheus gives the operator's targets: the metrics Service's name. */}}
{{- define "servicegraph.metricsJob" -}}
{{- printf "%s-metrics" (include "servicegraph.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The repository values.yaml names; no registry publishes it (NOTES.txt says so). */}}
{{- define "servicegraph.unpublishedRepository" -}}
ghcr.io/slo-engine/servicegraph-operator
{{- end }}

{{/* Soft spreading of several replicas over nodes and zones, unless the values place them. */}}
{{- define "servicegraph.topologySpreadConstraints" -}}
{{- if .Values.topologySpreadConstraints }}
{{- toYaml .Values.topologySpreadConstraints }}
{{- else if and .Values.spreadReplicas (gt (int .Values.replicaCount) 1) (not .Values.affinity) }}
{{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
- maxSkew: 1
  topologyKey: {{ . }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "servicegraph.selectorLabels" $ | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
{{- end }}
{{- end }}
{{- end }}
