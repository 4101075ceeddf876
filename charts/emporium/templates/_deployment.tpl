{{/*
Deployment of one service.
*/}}
{{- define "emporium.deployment" -}}
{{- $root := .root }}
{{- $svc := .svc }}
{{- $secretName := include "emporium.secretName" . }}
{{- $secretChecksum := "" }}
{{- if include "emporium.usesSecret" . }}
{{- if $svc.secret.create }}
{{- $secretChecksum = $svc.secret.stringData | toJson | sha256sum }}
{{- else }}
{{- /* The Secret belongs to the infrastructure: on install and upgrade its
current content is read, so a rotated credential rolls the pods at the next
helm upgrade. helm template and dry runs see nothing and hash the name. */}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $secretName }}
{{- $secretChecksum = (dig "data" $secretName $existing) | toJson | sha256sum }}
{{- end }}
{{- end }}
{{- $platform := lookup "v1" "ConfigMap" $root.Release.Namespace $root.Values.platform.configMapName }}
{{- if and (include "emporium.usesSecret" .) (not $svc.secret.create) }}
{{- include "emporium.checkSecretKeys" (dict "svc" $svc "secret" (lookup "v1" "Secret" $root.Release.Namespace $secretName) "platform" $platform "name" $secretName) }}
{{- end }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "emporium.componentName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "emporium.labels" . | nindent 4 }}
spec:
  {{- if not $svc.autoscaling.enabled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "emporium.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "emporium.labels" . | nindent 8 }}
      annotations:
        checksum/config: {{ include "emporium.serviceEnv" . | sha256sum }}
        checksum/platform: {{ (dig "data" dict $platform) | toJson | sha256sum }}
        {{- if $secretChecksum }}
        checksum/secret: {{ $secretChecksum }}
        {{- end }}
        {{- with $svc.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "emporium.componentName" . }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      {{- with $svc.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      # Longer than the preStop pause plus the service's own drain, so the
      # kubelet never kills a pod that is still finishing requests.
      terminationGracePeriodSeconds: {{ add $svc.preStopSleepSeconds $svc.shutdownGraceSeconds 10 }}
      securityContext:
        {{- include "emporium.podSecurityContext" . | nindent 8 }}
      {{- if or $svc.topologySpread.zones $svc.topologySpread.nodes }}
      topologySpreadConstraints:
        {{- if $svc.topologySpread.zones }}
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: {{ $svc.topologySpread.zones }}
          labelSelector:
            matchLabels:
              {{- include "emporium.selectorLabels" . | nindent 14 }}
          matchLabelKeys: [pod-template-hash]
        {{- end }}
        {{- if $svc.topologySpread.nodes }}
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: {{ $svc.topologySpread.nodes }}
          labelSelector:
            matchLabels:
              {{- include "emporium.selectorLabels" . | nindent 14 }}
          matchLabelKeys: [pod-template-hash]
        {{- end }}
      {{- end }}
      {{- with $svc.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "emporium.image" . }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: [{{ printf "emporium-%s" .name | quote }}]
          envFrom:
            {{- include "emporium.envFrom" (dict "root" $root "svc" $svc "configMap" true) | nindent 12 }}
          ports:
            - name: grpc
              containerPort: 50051
              protocol: TCP
            - name: admin
              containerPort: 8081
              protocol: TCP
            {{- if $svc.httpPort }}
            - name: http
              containerPort: {{ $svc.httpPort }}
              protocol: TCP
            {{- end }}
          # /livez is cheap and checks no dependency; /readyz fails while the
          # service cannot serve its critical path.
          startupProbe:
            httpGet:
              path: /livez
              port: admin
            periodSeconds: 2
            timeoutSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet:
              path: /livez
              port: admin
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: admin
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $svc.preStopSleepSeconds }}
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          securityContext:
            {{- include "emporium.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "emporium.volumeMounts" . | nindent 12 }}
      volumes:
        {{- include "emporium.volumes" . | nindent 8 }}
{{- end }}
