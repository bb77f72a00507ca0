{{/* The release's base name. */}}
{{- define "storecast.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The headless Service that gives each pod a stable DNS name. */}}
{{- define "storecast.headless" -}}
{{- printf "%s-nodes" (include "storecast.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "storecast.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "storecast.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The Secret holding the cookie, token and database URL. */}}
{{- define "storecast.secretName" -}}
{{- if .Values.secret.existingSecret -}}
{{- .Values.secret.existingSecret -}}
{{- else -}}
{{- include "storecast.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* Every pod's cluster address: the seed list follows replicaCount. */}}
{{- define "storecast.seeds" -}}
{{- $fullname := include "storecast.fullname" . -}}
{{- $headless := include "storecast.headless" . -}}
{{- $seeds := list -}}
{{- range $index := until (int .Values.replicaCount) -}}
{{- $seeds = append $seeds (printf "%s-%d.%s.%s.svc.cluster.local:%d" $fullname $index $headless $.Release.Namespace (int $.Values.ports.cluster)) -}}
{{- end -}}
{{- join "," $seeds -}}
{{- end -}}
