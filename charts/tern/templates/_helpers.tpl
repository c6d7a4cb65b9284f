{{/* Names */}}

{{- define "tern.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name; every object is "<fullname>-<component>". Kept to 40
characters so StatefulSet pod names and their DNS labels stay within 63. */}}
{{- define "tern.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tern.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels. Call with (dict "root" $ "component" "store"). */}}
{{- define "tern.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tern.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tern.labels" -}}
{{ include "tern.selectorLabels" . }}
helm.sh/chart: {{ include "tern.chart" .root }}
app.kubernetes.io/part-of: tern
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* Image of one service. Call with (dict "root" $ "name" "tern-store"). */}}
{{- define "tern.image" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- if .root.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) .name $tag -}}
{{- else -}}
{{- printf "%s:%s" .name $tag -}}
{{- end -}}
{{- end -}}

{{/* Store addressing. The headless Service gives every pod a stable name:
<fullname>-store-<i>.<fullname>-store.<namespace>.svc.<clusterDomain>; pod i is Raft id i+1.
tern-controller derives the same names (its --statefulset, --headless-service and
--cluster-domain flags) when it adds a node: keep the two in step. */}}
{{- define "tern.storePeer" -}}
{{- $full := include "tern.fullname" .root -}}
{{- printf "%s-store-%d.%s-store.%s.svc.%s:7100" $full (int .index) $full .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{/* Every store node as a JSON list of "host:port": what the services are given. */}}
{{- define "tern.storeNodes" -}}
{{- $nodes := list -}}
{{- range $i := until (int .Values.store.replicas) -}}
{{- $nodes = append $nodes (include "tern.storePeer" (dict "root" $ "index" $i)) -}}
{{- end -}}
{{- toJson $nodes -}}
{{- end -}}

{{/* tern-store's --initial-members: "1=host:7100,2=host:7100,...". */}}
{{- define "tern.storeInitialMembers" -}}
{{- $members := list -}}
{{- range $i := until (int .Values.store.replicas) -}}
{{- $members = append $members (printf "%d=%s" (add1 $i) (include "tern.storePeer" (dict "root" $ "index" $i))) -}}
{{- end -}}
{{- join "," $members -}}
{{- end -}}

{{/* TOML rendering of a flat settings map (one table level for maps such as the queue's
transports). Values come from YAML, where Helm keeps every number as a float: whole
numbers are written as TOML integers (the services' settings are integers, and their
parser refuses 1.0 or 1e+06 there). Strings use JSON escapes, which are valid TOML. */}}
{{- define "tern.tomlValue" -}}
{{- if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- ternary "true" "false" . -}}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{- if eq (float64 .) (floor .) -}}{{- int64 . -}}{{- else -}}{{- float64 . -}}{{- end -}}
{{- else if kindIs "slice" . -}}
[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "tern.tomlValue" $e }}{{ end }}]
{{- else -}}
{{- fail (printf "a setting of kind %s cannot be written as TOML" (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{- define "tern.toml" -}}
{{- range $k, $v := . }}
{{- if not (kindIs "map" $v) }}
{{ $k }} = {{ include "tern.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := . }}
{{- if kindIs "map" $v }}

[{{ $k }}]
{{- range $k2, $v2 := $v }}
{{ toJson $k2 }} = {{ include "tern.tomlValue" $v2 }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Environment every container gets: its pod's identity and OpenTelemetry settings. */}}
{{- define "tern.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.telemetry.otlpEndpoint | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .Values.telemetry.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.telemetry.samplerArg | toString | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)%s" (ternary (printf ",%s" .Values.telemetry.resourceAttributes) "" (ne .Values.telemetry.resourceAttributes "")) | quote }}
{{- end -}}

{{/* Liveness and readiness on the operations port every service serves. */}}
{{- define "tern.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  initialDelaySeconds: 10
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 6
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}

{{/* Pod template annotations: config checksum (a changed config rolls the pods),
Prometheus scraping, the tier's own. Call with (dict "root" $ "tier" .Values.smtp "config" $cfgText). */}}
{{- define "tern.podAnnotations" -}}
checksum/config: {{ .config | sha256sum }}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: "9090"
prometheus.io/path: /metrics
{{- end }}
{{- with .tier.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Scheduling fields of a tier. */}}
{{- define "tern.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every tier. Call with (dict "root" $) or, for a pod that
talks to the Kubernetes API (tern-controller, and the store's preStop hook), with
(dict "root" $ "serviceAccount" NAME): only those pods get a token, of their own
ServiceAccount with a read-only Role; every other pod gets none. */}}
{{- define "tern.podCommon" -}}
{{- if .serviceAccount }}
serviceAccountName: {{ .serviceAccount }}
automountServiceAccountToken: true
{{- else }}
automountServiceAccountToken: false
{{- end }}
enableServiceLinks: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The settings of one stateless tier: the chart's defaults, then the user's
tier.config, then what the chart must own (addresses, ports, paths). */}}
{{- define "tern.smtpConfig" -}}
{{- $full := include "tern.fullname" . -}}
{{- $cfg := mergeOverwrite (dict "hostname" .Values.hostname) (deepCopy .Values.smtp.config) (dict
  "store" (include "tern.storeNodes" . | fromJsonArray)
  "queue" (list (printf "%s-queue.%s.svc.%s:7200" $full .Release.Namespace .Values.clusterDomain))
  "mx_listen" "0.0.0.0:2525"
  "submission_listen" "0.0.0.0:2587"
  "submissions_listen" "0.0.0.0:2465"
  "tls_cert" "/etc/tern/tls/tls.crt"
  "tls_key" "/etc/tern/tls/tls.key"
  "metrics_listen" "0.0.0.0:9090"
  "drain_secs" (max 1 (sub (int .Values.smtp.terminationGracePeriodSeconds) 10))
  "log_format" .Values.telemetry.logFormat) -}}
{{- include "tern.toml" $cfg -}}
{{- end -}}

{{- define "tern.queueConfig" -}}
{{- $cfg := mergeOverwrite (dict "hostname" .Values.hostname) (deepCopy .Values.queue.config) (dict
  "store" (include "tern.storeNodes" . | fromJsonArray)
  "listen" "0.0.0.0:7200"
  "metrics_listen" "0.0.0.0:9090"
  "drain_secs" (max 1 (sub (int .Values.queue.terminationGracePeriodSeconds) 10))
  "log_format" .Values.telemetry.logFormat) -}}
{{- include "tern.toml" $cfg -}}
{{- end -}}

{{- define "tern.accessConfig" -}}
{{- $cfg := mergeOverwrite (dict) (deepCopy .Values.access.config) (dict
  "store" (include "tern.storeNodes" . | fromJsonArray)
  "imap_listen" "0.0.0.0:2143"
  "imaps_listen" "0.0.0.0:2993"
  "pop3_listen" "0.0.0.0:2110"
  "pop3s_listen" "0.0.0.0:2995"
  "tls_cert" "/etc/tern/tls/tls.crt"
  "tls_key" "/etc/tern/tls/tls.key"
  "metrics_listen" "0.0.0.0:9090"
  "drain_secs" (max 1 (sub (int .Values.access.terminationGracePeriodSeconds) 10))
  "log_format" .Values.telemetry.logFormat) -}}
{{- include "tern.toml" $cfg -}}
{{- end -}}

{{/* One store node's settings. Call with (dict "root" $ "index" i). */}}
{{- define "tern.storeConfig" -}}
{{- $root := .root -}}
{{- $cfg := mergeOverwrite (dict) (deepCopy $root.Values.store.config) (dict
  "id" (add1 .index)
  "listen" "0.0.0.0:7100"
  "advertise" (include "tern.storePeer" .)
  "data_dir" "/var/lib/tern/store"
  "initial_members" (include "tern.storeInitialMembers" $root)
  "metrics_listen" "0.0.0.0:9090"
  "log_format" $root.Values.telemetry.logFormat) -}}
{{- include "tern.toml" $cfg -}}
{{- end -}}

{{/* The store pods' label selector as a string (tern-controller's --pod-selector). */}}
{{- define "tern.storeSelector" -}}
{{- printf "app.kubernetes.io/name=%s,app.kubernetes.io/instance=%s,app.kubernetes.io/component=store" (include "tern.name" .) .Release.Name -}}
{{- end -}}

{{/* Cluster TLS (mutual TLS between Tern's own processes). Every certificate names its
holder's role in one URI SAN, spiffe://<trustDomain>/tern/<role>; the services refuse to
start with another role's certificate. */}}

{{/* Every role a certificate can be made for, in tern_trust::Role::ALL's order. The chart's
pods use store, smtp, queue, access, controller and (ternctl in the store pods) admin;
backup is for a scheduled backup job of your own. */}}
{{- define "tern.clusterTlsRoles" -}}
{{- toJson (list "store" "admin" "controller" "smtp" "queue" "access" "backup") -}}
{{- end -}}

{{/* The roles whose Secrets the chart's pods mount, as a JSON list. */}}
{{- define "tern.clusterTlsMountedRoles" -}}
{{- $roles := list "store" "smtp" "queue" "access" -}}
{{- if .Values.membership.enabled -}}{{- $roles = append $roles "controller" -}}{{- end -}}
{{- if .Values.clusterTls.ternctlInStorePods -}}{{- $roles = append $roles "admin" -}}{{- end -}}
{{- toJson $roles -}}
{{- end -}}

{{/* The Secret holding one role's ca.crt, tls.crt and tls.key. Call with
(dict "root" $ "role" "store"). */}}
{{- define "tern.clusterTlsSecret" -}}
{{- $pattern := .root.Values.clusterTls.secretNamePattern | default (printf "%s-%%s-cluster-tls" (include "tern.fullname" .root)) -}}
{{- printf $pattern .role -}}
{{- end -}}

{{/* The generated mode's CA Secret (kubernetes.io/tls: the CA's tls.crt and tls.key, and
ca.crt), usable as a cert-manager CA Issuer's secret. */}}
{{- define "tern.clusterCaSecret" -}}
{{- printf "%s-cluster-ca" (include "tern.fullname" .) -}}
{{- end -}}

{{/* The SPIFFE URI of a role. Call with (dict "root" $ "role" "store"). */}}
{{- define "tern.clusterTlsUri" -}}
{{- printf "spiffe://%s/tern/%s" .root.Values.clusterTls.trustDomain .role -}}
{{- end -}}

{{/* Where every service reads its cluster certificate: the default of its cluster_ca,
cluster_cert and cluster_key settings (tern-controller's --cluster-ca, ... too). */}}
{{- define "tern.clusterTlsDir" -}}/etc/tern/cluster-tls{{- end -}}

{{/* volumeMounts entries of a container of role .role (and, for the store with
clusterTls.ternctlInStorePods, the admin certificate for ternctl). */}}
{{- define "tern.clusterTlsMounts" -}}
- name: cluster-tls
  mountPath: {{ include "tern.clusterTlsDir" . }}
  readOnly: true
{{- if and (eq .role "store") .root.Values.clusterTls.ternctlInStorePods }}
- name: admin-tls
  mountPath: /etc/tern/admin-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* volumes entries matching tern.clusterTlsMounts. */}}
{{- define "tern.clusterTlsVolumes" -}}
- name: cluster-tls
  secret:
    secretName: {{ include "tern.clusterTlsSecret" . }}
{{- if and (eq .role "store") .root.Values.clusterTls.ternctlInStorePods }}
- name: admin-tls
  secret:
    secretName: {{ include "tern.clusterTlsSecret" (dict "root" .root "role" "admin") }}
{{- end }}
{{- end -}}
