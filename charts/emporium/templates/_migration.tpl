{{/*
Migration Job of one service that owns a database: `emporium-<name> migrate`
before every install and upgrade. The release stops if it fails, so new
code never runs against an old schema. It runs before the release's
ConfigMaps exist on first install, so it sets the service's settings inline.
*/}}
{{- define "emporium.migrationJob" -}}
{{- $root := .root }}
{{- $svc := .svc }}
{{- $migrations := $root.Values.migrations }}
{{- $selector := dict "root" $root "name" .name "component" "migration" }}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "emporium.migrationName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "emporium.commonLabels" $root | nindent 4 }}
    {{- include "emporium.selectorLabels" $selector | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  backoffLimit: {{ $migrations.backoffLimit }}
  activeDeadlineSeconds: {{ $migrations.activeDeadlineSeconds }}
  ttlSecondsAfterFinished: {{ $migrations.ttlSecondsAfterFinished }}
  template:
    metadata:
      labels:
        {{- include "emporium.commonLabels" $root | nindent 8 }}
        {{- include "emporium.selectorLabels" $selector | nindent 8 }}
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- include "emporium.podSecurityContext" . | nindent 8 }}
      {{- with $svc.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: migrate
          image: {{ include "emporium.image" . }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: [{{ printf "emporium-%s" .name | quote }}, "migrate"]
          envFrom:
            {{- include "emporium.envFrom" (dict "root" $root "svc" $svc "configMap" false) | nindent 12 }}
          env:
            {{- range $key, $value := (include "emporium.serviceEnv" . | fromYaml) }}
            - name: {{ $key }}
              value: {{ $value | toString | quote }}
            {{- end }}
          resources:
            {{- toYaml $migrations.resources | nindent 12 }}
          securityContext:
            {{- include "emporium.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "emporium.volumeMounts" . | nindent 12 }}
      volumes:
        {{- include "emporium.volumes" . | nindent 8 }}
{{- end }}
