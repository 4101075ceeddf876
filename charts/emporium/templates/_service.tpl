{{/*
Service of one service: gRPC, admin (probes and metrics) and, for the
gateway, HTTP.
*/}}
{{- define "emporium.service" -}}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "emporium.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "emporium.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "emporium.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: 50051
      targetPort: grpc
      protocol: TCP
      appProtocol: kubernetes.io/h2c
    - name: admin
      port: 8081
      targetPort: admin
      protocol: TCP
      appProtocol: http
    {{- if .svc.httpPort }}
    - name: http
      port: {{ .svc.httpPort }}
      targetPort: http
      protocol: TCP
      appProtocol: http
    {{- end }}
{{- end }}
