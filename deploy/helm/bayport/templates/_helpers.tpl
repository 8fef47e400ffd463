{{/* Names, labels and the pieces every Bayport pod shares. */}}

{{- define "bayport.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bayport.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "worker"). */}}
{{- define "bayport.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "bayport.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "bayport.secretName" -}}
{{- if .Values.existingSecret -}}
{{- .Values.existingSecret -}}
{{- else -}}
{{- include "bayport.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* The Secret's data: required values fail the render with what to set. */}}
{{- define "bayport.secretData" -}}
BAYPORT_SECRET_KEY: {{ required "set secrets.secretKey (a Fernet key) or existingSecret" .Values.secrets.secretKey | quote }}
BAYPORT_DATABASE_URL: {{ required "set secrets.databaseUrl (postgresql+psycopg://…) or existingSecret" .Values.secrets.databaseUrl | quote }}
BAYPORT_BROKER_URL: {{ required "set secrets.brokerUrl (redis://…) or existingSecret" .Values.secrets.brokerUrl | quote }}
{{- if .Values.secrets.bootstrapAccessKey }}
BAYPORT_BOOTSTRAP_ACCESS_KEY: {{ .Values.secrets.bootstrapAccessKey | quote }}
{{- end }}
{{- if .Values.flower.enabled }}
BAYPORT_FLOWER_BASIC_AUTH: {{ required "set secrets.flowerBasicAuth (user:password), existingSecret, or flower.enabled=false" .Values.secrets.flowerBasicAuth | quote }}
{{- end }}
{{- $metricsPublic := eq (toString (default "false" .Values.config.BAYPORT_METRICS_PUBLIC) | lower) "true" }}
{{- if not $metricsPublic }}
BAYPORT_METRICS_TOKEN: {{ required "set secrets.metricsToken (the Bearer token Prometheus sends to /metrics), existingSecret, or config.BAYPORT_METRICS_PUBLIC=true" .Values.secrets.metricsToken | quote }}
{{- else if .Values.secrets.metricsToken }}
BAYPORT_METRICS_TOKEN: {{ .Values.secrets.metricsToken | quote }}
{{- end }}
{{- end -}}

{{/* Rolls pods when settings change. */}}
{{- define "bayport.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}

{{- define "bayport.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "bayport.fullname" . }}
  - secretRef:
      name: {{ include "bayport.secretName" . }}
{{- end -}}

{{/* A writable data dir (heartbeat files) and /tmp on a read-only root filesystem. */}}
{{- define "bayport.volumeMounts" -}}
volumeMounts:
  - name: data
    mountPath: {{ .Values.config.BAYPORT_DATA_DIR | default "/var/lib/bayport" }}
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{- define "bayport.volumes" -}}
volumes:
  - name: data
    emptyDir: {}
  - name: tmp
    emptyDir: {}
{{- end -}}

{{- define "bayport.podSpecCommon" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* nodeSelector, tolerations and affinity of one component's values. */}}
{{- define "bayport.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
