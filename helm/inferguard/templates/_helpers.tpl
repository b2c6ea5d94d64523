{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "inferguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-inferguard unless the release name already says inferguard. */}}
{{- define "inferguard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "inferguard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "inferguard.labels" -}}
helm.sh/chart: {{ include "inferguard.chart" . }}
app.kubernetes.io/name: {{ include "inferguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: inferguard
{{- end -}}

{{- define "inferguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inferguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: injector
{{- end -}}

{{- define "inferguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "inferguard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Images default their tag to the chart's appVersion. */}}
{{- define "inferguard.injectorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "inferguard.sidecarImage" -}}
{{- printf "%s:%s" .Values.sidecar.image.repository (default .Chart.AppVersion .Values.sidecar.image.tag) -}}
{{- end -}}

{{/* The Mutating- and the ValidatingWebhookConfiguration share one name (they are different kinds), so
the injector's single --webhook-config NAME finds both when it patches their caBundle. */}}
{{- define "inferguard.webhookConfigName" -}}
{{- include "inferguard.fullname" . -}}
{{- end -}}

{{- define "inferguard.tlsSecretName" -}}
{{- printf "%s-tls" (include "inferguard.fullname" .) -}}
{{- end -}}

{{- define "inferguard.jaegerName" -}}
{{- printf "%s-jaeger" (include "inferguard.fullname" .) -}}
{{- end -}}

{{/* Where the sidecars send OTLP: an explicit endpoint, else the chart's Jaeger, else nowhere. */}}
{{- define "inferguard.otelEndpoint" -}}
{{- if .Values.sidecar.otel.endpoint -}}
{{- .Values.sidecar.otel.endpoint -}}
{{- else if .Values.jaeger.enabled -}}
{{- if eq .Values.sidecar.otel.protocol "grpc" -}}
{{- printf "http://%s.%s.svc:4317" (include "inferguard.jaegerName" .) .Release.Namespace -}}
{{- else -}}
{{- printf "http://%s.%s.svc:4318" (include "inferguard.jaegerName" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the webhooks never see (the injector also refuses them in code). */}}
{{- define "inferguard.excludedNamespaces" -}}
- kube-system
- kube-public
- kube-node-lease
- {{ .Release.Namespace }}
{{- range .Values.webhook.excludeNamespaces }}
- {{ . }}
{{- end }}
{{- end -}}

{{/* The pod-security settings shared by every container the chart runs. */}}
{{- define "inferguard.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
