{{/*
ServiceMonitor of one service: /metrics on the admin port.
*/}}
{{- define "emporium.serviceMonitor" -}}
{{- $monitor := .root.Values.monitoring.serviceMonitor }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "emporium.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "emporium.labels" . | nindent 4 }}
    {{- with $monitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "emporium.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames: [{{ .root.Release.Namespace }}]
  endpoints:
    - port: admin
      path: /metrics
      interval: {{ $monitor.interval }}
      scheme: http
{{- end }}
