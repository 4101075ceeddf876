{{/*
PodDisruptionBudget of one service. Pods that are not ready may always be
evicted, so a crash-looping pod never blocks a node drain.
*/}}
{{- define "emporium.pdb" -}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "emporium.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "emporium.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .svc.podDisruptionBudget.maxUnavailable }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "emporium.selectorLabels" . | nindent 6 }}
{{- end }}
