{{/*
Refuse to install when a Secret the infrastructure owns lacks a key the
service reads from it (docs/deploy.md, "Before the first install"): the pods
take the Secret whole with envFrom, so a renamed or missing key would only
show as a crash-looping service after the rollout. DATABASE_URL for a service
with a database; the SASL login for a Kafka user when the platform ConfigMap
selects a SASL protocol. Nothing is checked where lookup sees no cluster
(helm template, client-side dry runs) or the Secret is not there yet.
Usage: {{- include "emporium.checkSecretKeys" (dict "svc" $svc "secret" $existing "platform" $platform "name" $secretName) }}
*/}}
{{- define "emporium.checkSecretKeys" -}}
{{- if .secret }}
{{- $required := list }}
{{- if .svc.database }}
{{- $required = append $required "DATABASE_URL" }}
{{- end }}
{{- $protocol := dig "data" "KAFKA_SECURITY_PROTOCOL" "" (.platform | default dict) }}
{{- if and .svc.kafka (hasPrefix "SASL" $protocol) }}
{{- $required = concat $required (list "KAFKA_SASL_USERNAME" "KAFKA_SASL_PASSWORD") }}
{{- end }}
{{- $data := .secret.data | default dict }}
{{- range $key := $required }}
{{- if not (hasKey $data $key) }}
{{- fail (printf "services.%s: Secret %s has no key %s (it has: %s); the infrastructure creates it with the keys in docs/deploy.md" $.svc.name $.name $key (keys $data | sortAlpha | join ", ")) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
