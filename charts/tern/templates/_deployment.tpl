{{/* A stateless tier (tern-smtp, tern-queue, tern-access) as a Deployment. Call with
(dict "root" $ "component" "smtp" "tier" .Values.smtp "config" $configText
      "ports" (list (list "smtp" 2525) ...) "tls" true). */}}
{{- define "tern.deployment" -}}
{{- $root := .root -}}
{{- $full := include "tern.fullname" $root -}}
{{- $tier := .tier -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $full }}-{{ .component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "tern.labels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  {{- if not $tier.autoscaling.enabled }}
  replicas: {{ int $tier.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "tern.selectorLabels" (dict "root" $root "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "tern.labels" (dict "root" $root "component" .component) | nindent 8 }}
      annotations:
        {{- include "tern.podAnnotations" (dict "root" $root "tier" $tier "config" .config) | nindent 8 }}
    spec:
      {{- include "tern.podCommon" (dict "root" $root) | nindent 6 }}
      terminationGracePeriodSeconds: {{ int $tier.terminationGracePeriodSeconds }}
      {{- with (include "tern.scheduling" $tier | trim) }}
      {{- . | nindent 6 }}
      {{- end }}
      affinity:
        {{- if $tier.affinity }}
        {{- toYaml $tier.affinity | nindent 8 }}
        {{- else }}
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 50
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels:
                    {{- include "tern.selectorLabels" (dict "root" $root "component" .component) | nindent 20 }}
        {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "tern.image" (dict "root" $root "name" (printf "tern-%s" .component)) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            - --config
            - /etc/tern/config/{{ .component }}.toml
          env:
            {{- include "tern.env" $root | nindent 12 }}
          ports:
            {{- range .ports }}
            - name: {{ index . 0 }}
              containerPort: {{ index . 1 }}
              protocol: TCP
            {{- end }}
            - name: metrics
              containerPort: 9090
              protocol: TCP
          {{- include "tern.probes" $root | nindent 10 }}
          resources:
            {{- toYaml $tier.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/tern/config
              readOnly: true
            {{- if .tls }}
            - name: tls
              mountPath: /etc/tern/tls
              readOnly: true
            {{- end }}
            {{- include "tern.clusterTlsMounts" (dict "root" $root "role" .component) | nindent 12 }}
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: config
          configMap:
            name: {{ $full }}-{{ .component }}
        {{- if .tls }}
        - name: tls
          secret:
            secretName: {{ $root.Values.tls.secretName }}
        {{- end }}
        {{- include "tern.clusterTlsVolumes" (dict "root" $root "role" .component) | nindent 8 }}
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
{{- end -}}

{{/* The ConfigMap holding a stateless tier's settings file. */}}
{{- define "tern.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "tern.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "tern.labels" (dict "root" .root "component" .component) | nindent 4 }}
data:
  {{ .component }}.toml: |
    {{- .config | trim | nindent 4 }}
{{- end -}}

{{/* A LoadBalancer Service for the mail ports of a tier. Call with
(dict "root" $ "component" "smtp" "service" .Values.smtp.service
      "ports" (list (list "smtp" 25 "smtp") ...)) : name, port, container port name. */}}
{{- define "tern.mailService" -}}
{{- $svc := .service -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "tern.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "tern.labels" (dict "root" .root "component" .component) | nindent 4 }}
  {{- with $svc.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $svc.type }}
  {{- if or (eq $svc.type "LoadBalancer") (eq $svc.type "NodePort") }}
  externalTrafficPolicy: {{ $svc.externalTrafficPolicy }}
  {{- end }}
  {{- if eq $svc.type "LoadBalancer" }}
  {{- with $svc.loadBalancerClass }}
  loadBalancerClass: {{ . }}
  {{- end }}
  {{- with $svc.loadBalancerIP }}
  loadBalancerIP: {{ . }}
  {{- end }}
  {{- with $svc.loadBalancerSourceRanges }}
  loadBalancerSourceRanges:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  selector:
    {{- include "tern.selectorLabels" (dict "root" .root "component" .component) | nindent 4 }}
  ports:
    {{- range .ports }}
    - name: {{ index . 0 }}
      port: {{ index . 1 }}
      targetPort: {{ index . 2 }}
      protocol: TCP
    {{- end }}
{{- end -}}
