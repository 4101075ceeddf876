{{/*
Chart name, truncated to 63 characters (a DNS label).
Usage: {{ include "emporium.name" . }}
*/}}
{{- define "emporium.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: the release name, or release-chart when the
release name does not already contain the chart name; at most 63 characters.
Usage: {{ include "emporium.fullname" . }}
*/}}
{{- define "emporium.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of one service's objects: <fullname>-<service>, at most 63 characters.
Usage: {{ include "emporium.componentName" (dict "root" $ "name" "catalog") }}
*/}}
{{- define "emporium.componentName" -}}
{{- printf "%s-%s" (include "emporium.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of the migration Job and its objects: <component>-migrate, at most 63
characters (the component part is cut first).
Usage: {{ include "emporium.migrationName" (dict "root" $ "name" "catalog") }}
*/}}
{{- define "emporium.migrationName" -}}
{{- printf "%s-migrate" (include "emporium.componentName" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/*
Labels of every object of the release.
Usage: {{ include "emporium.commonLabels" $ }}
*/}}
{{- define "emporium.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "emporium.name" . }}
app.kubernetes.io/version: {{ include "emporium.imageTag" . | trunc 63 | quote }}
{{- end }}

{{/*
Selector labels of one service's pods. Kept minimal: they are immutable in a
Deployment's selector, so they never change between chart versions (a test
guards this). component tells the serving pods from the migration Job's.
Usage: {{ include "emporium.selectorLabels" (dict "root" $ "name" "catalog" "component" "server") }}
*/}}
{{- define "emporium.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component | default "server" }}
{{- end }}

{{/*
All labels of one service's objects.
Usage: {{ include "emporium.labels" (dict "root" $ "name" "catalog") }}
*/}}
{{- define "emporium.labels" -}}
{{ include "emporium.commonLabels" .root }}
{{ include "emporium.selectorLabels" . }}
{{- end }}

{{/*
Image tag of the services: image.tag, or the chart's appVersion.
Usage: {{ include "emporium.imageTag" $ }}
*/}}
{{- define "emporium.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Image reference of one service: <registry>/<name>@<digest> or :<tag>.
Usage: {{ include "emporium.image" (dict "root" $ "name" "catalog") }}
*/}}
{{- define "emporium.image" -}}
{{- $image := .root.Values.image }}
{{- if $image.digest }}
{{- printf "%s/%s@%s" $image.registry .name $image.digest }}
{{- else }}
{{- printf "%s/%s:%s" $image.registry .name (include "emporium.imageTag" .root) }}
{{- end }}
{{- end }}

{{/*
Deep merge: writes every key of src into dst (a dict, changed in place).
Maps are merged key by key; any other value, false and 0 included, replaces
what dst had. (sprig's mergeOverwrite would keep dst's value when src's is
false or 0, so a service could not turn off a default.)
Usage: {{- $_ := include "emporium.mergeInto" (dict "dst" $copy "src" $override) }}
*/}}
{{- define "emporium.mergeInto" -}}
{{- $dst := .dst }}
{{- range $key, $value := .src }}
{{- $current := get $dst $key }}
{{- if and (kindIs "map" $value) (kindIs "map" $current) }}
{{- $_ := include "emporium.mergeInto" (dict "dst" $current "src" $value) }}
{{- else if kindIs "map" $value }}
{{- $_ := set $dst $key (deepCopy $value) }}
{{- else }}
{{- $_ := set $dst $key $value }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The settings of every service: defaults merged with each entry of services,
key by key. This is the only place the two are combined. Returns a dict
(name -> settings) through the "out" argument.
Usage: {{- $services := dict }}{{- $_ := include "emporium.mergedServices" (dict "root" $ "out" $services) }}
*/}}
{{- define "emporium.mergedServices" -}}
{{- $root := .root }}
{{- $out := .out }}
{{- range $name, $entry := $root.Values.services }}
{{- $svc := deepCopy $root.Values.defaults }}
{{- $_ := include "emporium.mergeInto" (dict "dst" $svc "src" ($entry | default dict)) }}
{{- $_ := set $svc "name" $name }}
{{- $_ := set $out $name $svc }}
{{- end }}
{{- range $name, $svc := $out }}
{{- range $callee := $svc.calls }}
{{- $target := get $out $callee }}
{{- if not $target }}
{{- fail (printf "services.%s.calls: %q is not an entry of services" $name $callee) }}
{{- end }}
{{- if and $svc.enabled (not $target.enabled) }}
{{- fail (printf "services.%s.calls: %q is disabled" $name $callee) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of the Secret one service reads: secret.name, or emporium-<service>
(the name the infrastructure uses).
Usage: {{ include "emporium.secretName" (dict "svc" $svc) }}
*/}}
{{- define "emporium.secretName" -}}
{{- .svc.secret.name | default (printf "emporium-%s" .svc.name) }}
{{- end }}

{{/*
Whether one service reads a Secret at all ("true" or "").
Usage: {{ if include "emporium.usesSecret" (dict "svc" $svc) }}
*/}}
{{- define "emporium.usesSecret" -}}
{{- if or .svc.database .svc.kafka }}true{{ end }}
{{- end }}

{{/*
The non-secret environment of one service, as a YAML map of strings: the
service's ConfigMap holds it and the migration Job sets it inline (the Job
runs before the ConfigMap exists on first install).
Usage: {{ include "emporium.serviceEnv" (dict "root" $ "svc" $svc) }}
*/}}
{{- define "emporium.serviceEnv" -}}
{{- $root := .root }}
{{- $svc := .svc }}
{{- $env := dict
  "ENVIRONMENT" $root.Values.environment
  "LOG_LEVEL" $svc.logLevel
  "BIND_HOST" "0.0.0.0"
  "GRPC_PORT" "50051"
  "ADMIN_PORT" "8081"
  "SHUTDOWN_GRACE_SECONDS" (toString $svc.shutdownGraceSeconds)
  "OTEL_SERVICE_NAME" $svc.name
  "OTEL_RESOURCE_ATTRIBUTES" (printf "deployment.environment.name=%s,k8s.namespace.name=%s" $root.Values.environment $root.Release.Namespace)
}}
{{- if $svc.httpPort }}
{{- $_ := set $env "HTTP_PORT" (toString $svc.httpPort) }}
{{- end }}
{{- if $svc.database }}
{{- $_ := set $env "DATABASE_MIGRATE_ON_START" "false" }}
{{- end }}
{{- if and $svc.kafka (include "emporium.caSource" $root.Values.platform.kafkaCa) }}
{{- $_ := set $env "KAFKA_SSL_CA_FILE" "/etc/emporium/kafka-ca/ca.crt" }}
{{- end }}
{{- if and $svc.database (include "emporium.caSource" $root.Values.platform.postgresCa) }}
{{- $_ := set $env "PGSSLROOTCERT" "/etc/emporium/postgres-ca/ca.crt" }}
{{- end }}
{{- range $callee := $svc.calls }}
{{- $_ := set $env (printf "%s_ADDR" (upper $callee)) (printf "%s:50051" (include "emporium.componentName" (dict "root" $root "name" $callee))) }}
{{- end }}
{{- range $key, $value := $svc.env }}
{{- $_ := set $env $key (toString $value) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/*
Pod-level security context shared by the services and the migration Jobs:
the Pod Security "restricted" profile.
Usage: {{- include "emporium.podSecurityContext" . | nindent 6 }}
*/}}
{{- define "emporium.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Container-level security context: no root, no privilege escalation, no
capabilities, read-only root filesystem.
Usage: {{- include "emporium.containerSecurityContext" . | nindent 10 }}
*/}}
{{- define "emporium.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
envFrom of one service's container: the platform ConfigMap first, then the
service's own settings, then its Secret (a later source wins on a clash).
Usage: {{- include "emporium.envFrom" (dict "root" $ "svc" $svc "configMap" true) | nindent 10 }}
*/}}
{{- define "emporium.envFrom" -}}
{{- if .root.Values.platform.configMapName }}
- configMapRef:
    name: {{ .root.Values.platform.configMapName }}
{{- end }}
{{- if .configMap }}
- configMapRef:
    name: {{ include "emporium.componentName" (dict "root" .root "name" .svc.name) }}
{{- end }}
{{- if include "emporium.usesSecret" (dict "svc" .svc) }}
- secretRef:
    name: {{ include "emporium.secretName" (dict "svc" .svc) }}
{{- end }}
{{- end }}

{{/*
Whether a CA bundle (platform.kafkaCa or platform.postgresCa) is configured:
"true" or empty.
Usage: {{- if include "emporium.caSource" .Values.platform.kafkaCa }}
*/}}
{{- define "emporium.caSource" -}}
{{- if and .configMapName .secretName }}
{{- fail (printf "platform CA bundle: set configMapName (%s) or secretName (%s), not both" .configMapName .secretName) }}
{{- end }}
{{- if or .configMapName .secretName }}true{{ end }}
{{- end }}

{{/*
One CA bundle volume, from a ConfigMap or a Secret; the file is always ca.crt.
Usage: {{- include "emporium.caVolume" (dict "name" "kafka-ca" "source" .root.Values.platform.kafkaCa) }}
*/}}
{{- define "emporium.caVolume" -}}
- name: {{ .name }}
  {{- if .source.configMapName }}
  configMap:
    name: {{ .source.configMapName }}
  {{- else }}
  secret:
    secretName: {{ .source.secretName }}
  {{- end }}
    defaultMode: 0444
    items:
      - key: {{ .source.key }}
        path: ca.crt
{{- end }}

{{/*
Volumes every service pod has: scratch space for the read-only root
filesystem, and the CA bundles of Kafka and PostgreSQL where configured.
Usage: {{- include "emporium.volumes" (dict "root" $ "svc" $svc) | nindent 6 }}
*/}}
{{- define "emporium.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if and .svc.kafka (include "emporium.caSource" .root.Values.platform.kafkaCa) }}
{{ include "emporium.caVolume" (dict "name" "kafka-ca" "source" .root.Values.platform.kafkaCa) }}
{{- end }}
{{- if and .svc.database (include "emporium.caSource" .root.Values.platform.postgresCa) }}
{{ include "emporium.caVolume" (dict "name" "postgres-ca" "source" .root.Values.platform.postgresCa) }}
{{- end }}
{{- end }}

{{/*
Volume mounts matching emporium.volumes.
Usage: {{- include "emporium.volumeMounts" (dict "root" $ "svc" $svc) | nindent 10 }}
*/}}
{{- define "emporium.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if and .svc.kafka (include "emporium.caSource" .root.Values.platform.kafkaCa) }}
- name: kafka-ca
  mountPath: /etc/emporium/kafka-ca
  readOnly: true
{{- end }}
{{- if and .svc.database (include "emporium.caSource" .root.Values.platform.postgresCa) }}
- name: postgres-ca
  mountPath: /etc/emporium/postgres-ca
  readOnly: true
{{- end }}
{{- end }}

{{/*
NetworkPolicy peers with their ports, as one egress or ingress rule.
Usage: {{- include "emporium.peerRule" (dict "peers" $list "ports" $ports "direction" "to") | nindent 4 }}
*/}}
{{- define "emporium.peerRule" -}}
- {{ .direction }}:
    {{- toYaml .peers | nindent 4 }}
  ports:
  {{- range .ports }}
    - protocol: TCP
      port: {{ . }}
  {{- end }}
{{- end }}
