{{/*
ServiceAccount of one service: no API token is mounted (the services never
call the Kubernetes API).
*/}}
{{- define "emporium.serviceAccount" -}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "emporium.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "emporium.labels" . | nindent 4 }}
automountServiceAccountToken: false
{{- end }}
