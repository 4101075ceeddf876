{{/*
Secret of one service, for clusters where the infrastructure does not create
emporium-<service>. A pre-install/pre-upgrade hook so that it exists before
the migration Job runs; Helm does not delete it on uninstall.
*/}}
{{- define "emporium.secret" -}}
{{- if not .svc.secret.stringData.DATABASE_URL }}
{{- if .svc.database }}
{{- fail (printf "services.%s.secret.stringData.DATABASE_URL: required with secret.create (pass it with --set-file or --set)" .name) }}
{{- end }}
{{- end }}
---
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "emporium.secretName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "emporium.labels" . | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "-20"
    helm.sh/hook-delete-policy: before-hook-creation
type: Opaque
stringData:
  {{- range $key, $value := .svc.secret.stringData }}
  {{ $key }}: {{ $value | toString | quote }}
  {{- end }}
{{- end }}
