{{/*
ConfigMap of one service: its non-secret environment (docs/configuration.md).
*/}}
{{- define "emporium.configMap" -}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "emporium.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "emporium.labels" . | nindent 4 }}
data:
  {{- include "emporium.serviceEnv" . | nindent 2 }}
{{- end }}
