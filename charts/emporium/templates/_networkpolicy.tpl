{{/*
NetworkPolicy of one service: on top of the release-wide deny
(networkpolicy-deny.yaml), allows exactly the edges of the service graph
(callers in on gRPC, callees out on gRPC), DNS, Kafka and PostgreSQL where
the service uses them, telemetry export, metrics scraping, and the edge's
HTTP traffic for the service with an HTTP port. Kubelet probes come from the
node and are not subject to NetworkPolicy.
*/}}
{{- define "emporium.networkPolicy" -}}
{{- $root := .root }}
{{- $svc := .svc }}
{{- $net := $root.Values.networkPolicy }}
{{- $callers := list }}
{{- range $name, $other := .services }}
{{- if and $other.enabled (has $svc.name $other.calls) }}
{{- $callers = append $callers $name }}
{{- end }}
{{- end }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "emporium.componentName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "emporium.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "emporium.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- range $callers }}
    - from:
        - podSelector:
            matchLabels:
              {{- include "emporium.selectorLabels" (dict "root" $root "name" .) | nindent 14 }}
      ports:
        - protocol: TCP
          port: 50051
    {{- end }}
    {{- with $net.metricsScrapers }}
    {{- include "emporium.peerRule" (dict "direction" "from" "peers" . "ports" (list 8081)) | nindent 4 }}
    {{- end }}
    {{- if and $svc.httpPort $net.edge }}
    {{- include "emporium.peerRule" (dict "direction" "from" "peers" $net.edge "ports" (list $svc.httpPort)) | nindent 4 }}
    {{- end }}
  egress:
    - to:
        {{- toYaml $net.dns | nindent 8 }}
      ports:
        - protocol: UDP
          port: 53
        - protocol: TCP
          port: 53
    {{- range $svc.calls }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "emporium.selectorLabels" (dict "root" $root "name" .) | nindent 14 }}
      ports:
        - protocol: TCP
          port: 50051
    {{- end }}
    {{- if $svc.kafka }}
    {{- include "emporium.peerRule" (dict "direction" "to" "peers" $net.kafka.peers "ports" $net.kafka.ports) | nindent 4 }}
    {{- end }}
    {{- if $svc.database }}
    {{- include "emporium.peerRule" (dict "direction" "to" "peers" $net.postgres.peers "ports" $net.postgres.ports) | nindent 4 }}
    {{- end }}
    {{- with $net.telemetry.peers }}
    {{- include "emporium.peerRule" (dict "direction" "to" "peers" . "ports" $net.telemetry.ports) | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
NetworkPolicy of one service's migration Job: DNS and PostgreSQL only. A
hook like the Job, created just before it, so the Job can reach the database
on first install, before the release's other objects exist.
*/}}
{{- define "emporium.migrationNetworkPolicy" -}}
{{- $net := .root.Values.networkPolicy }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "emporium.migrationName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "emporium.commonLabels" .root | nindent 4 }}
    {{- include "emporium.selectorLabels" (dict "root" .root "name" .name "component" "migration") | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "-10"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  podSelector:
    matchLabels:
      {{- include "emporium.selectorLabels" (dict "root" .root "name" .name "component" "migration") | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress: []
  egress:
    - to:
        {{- toYaml $net.dns | nindent 8 }}
      ports:
        - protocol: UDP
          port: 53
        - protocol: TCP
          port: 53
    {{- include "emporium.peerRule" (dict "direction" "to" "peers" $net.postgres.peers "ports" $net.postgres.ports) | nindent 4 }}
{{- end }}
