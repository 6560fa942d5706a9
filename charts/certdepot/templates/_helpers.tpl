{{/* Names, labels and small computed values shared by the templates. */}}

{{- define "certdepot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-<chart>", or just the release name when it already contains the chart name. */}}
{{- define "certdepot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Component names leave room for suffixes such as "-credentials". */}}
{{- define "certdepot.operator.fullname" -}}
{{- printf "%s-operator" (include "certdepot.fullname" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "certdepot.repository.fullname" -}}
{{- printf "%s-repository" (include "certdepot.fullname" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "certdepot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "certdepot.labels" -}}
helm.sh/chart: {{ include "certdepot.chart" . }}
app.kubernetes.io/name: {{ include "certdepot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: certdepot
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "certdepot.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certdepot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "certdepot.repository.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certdepot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: repository
{{- end -}}

{{- define "certdepot.operator.labels" -}}
{{ include "certdepot.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "certdepot.repository.labels" -}}
{{ include "certdepot.labels" . }}
app.kubernetes.io/component: repository
{{- end -}}

{{- define "certdepot.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "certdepot.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "certdepot.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "certdepot.repository.serviceAccountName" -}}
{{- if .Values.repository.serviceAccount.create -}}
{{- default (include "certdepot.repository.fullname" .) .Values.repository.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.repository.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The URL clients use; defaults to the in-cluster Service name. */}}
{{- define "certdepot.repository.baseUrl" -}}
{{- if .Values.repository.baseUrl -}}
{{- .Values.repository.baseUrl | trimSuffix "/" -}}
{{- else -}}
{{- $port := int .Values.repository.service.httpsPort -}}
{{- if eq $port 443 -}}
{{- printf "https://%s.%s.svc" (include "certdepot.repository.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- printf "https://%s.%s.svc:%d" (include "certdepot.repository.fullname" .) .Release.Namespace $port -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "certdepot.repository.credentialsSecretName" -}}
{{- printf "%s-credentials" (include "certdepot.repository.fullname" .) -}}
{{- end -}}

{{- define "certdepot.repository.kekSecretName" -}}
{{- default (printf "%s-key-encryption-key" (include "certdepot.repository.fullname" .)) .Values.repository.keyEncryptionKey.existingSecret -}}
{{- end -}}

{{/* Where PGPASSWORD comes from: (secret name, key), or empty when there is no password. */}}
{{- define "certdepot.repository.databasePasswordRef" -}}
{{- $pg := .Values.repository.storage.postgresql -}}
{{- if $pg.existingSecret -}}
{{- toJson (dict "name" $pg.existingSecret "key" $pg.existingSecretKey) -}}
{{- else if $pg.password -}}
{{- toJson (dict "name" (include "certdepot.repository.credentialsSecretName" .) "key" "database-password") -}}
{{- end -}}
{{- end -}}

{{- define "certdepot.repository.claimName" -}}
{{- default (printf "%s-data" (include "certdepot.repository.fullname" .)) .Values.repository.storage.sqlite.existingClaim -}}
{{- end -}}

{{/* Fail early on value combinations the schema cannot express. */}}
{{- define "certdepot.validate" -}}
{{- if and (not .Values.operator.enabled) (not .Values.repository.enabled) -}}
{{- fail "nothing to install: enable operator.enabled, repository.enabled or both" -}}
{{- end -}}
{{- if .Values.repository.enabled -}}
{{- $r := .Values.repository -}}
{{- if and (eq $r.storage.type "sqlite") (gt (int $r.replicas) 1) -}}
{{- fail "repository.replicas > 1 needs repository.storage.type=postgresql: a SQLite file on a ReadWriteOnce volume serves one pod" -}}
{{- end -}}
{{- if eq $r.storage.type "postgresql" -}}
{{- if not $r.storage.postgresql.url -}}
{{- fail "repository.storage.type=postgresql needs repository.storage.postgresql.url" -}}
{{- end -}}
{{- if regexMatch "^[^:]+://[^/@]*:[^/@]*@" $r.storage.postgresql.url -}}
{{- fail "repository.storage.postgresql.url must not contain the password (it would land in a ConfigMap): use repository.storage.postgresql.existingSecret or .password" -}}
{{- end -}}
{{- end -}}
{{- if and (gt (int $r.replicas) 1) (not $r.tls.secretName) -}}
{{- fail "repository.replicas > 1 needs repository.tls.secretName: self-signed certificates differ per pod, so clients could not trust them" -}}
{{- end -}}
{{- range $k := list "baseUrl" "listeners" "storage" "keyEncryptionKey" -}}
{{- if hasKey $r.config $k -}}
{{- fail (printf "repository.config.%s is set by the chart; use the chart's own values (repository.baseUrl, repository.ports, repository.storage, repository.keyEncryptionKey)" $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
