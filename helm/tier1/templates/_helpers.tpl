{{- define "tier1.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tier1.fullname" -}}
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

{{- define "tier1.labels" -}}
app.kubernetes.io/name: {{ include "tier1.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "tier1.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tier1.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The sidecar-mode example app's pods: their own name, so tier1's selectors never match them. */}}
{{- define "tier1.appSelectorLabels" -}}
app.kubernetes.io/name: {{ .Values.app.name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tier1.secretName" -}}
{{- default (include "tier1.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "tier1.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tier1.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Whether this chart renders a pod of its own (else sidecar mode serves a parent chart's pods). */}}
{{- define "tier1.hasWorkload" -}}
{{- if or (eq .Values.mode "central") .Values.app.image -}}true{{- end -}}
{{- end -}}

{{/*
The Secret, rendered once for secret.yaml and once for the pods' checksum/secret annotation, so
a rotated key restarts them (env vars are read only at start). Every value is required: an empty
key would start tier1 with an empty front key or provider key and fail far from the cause.
*/}}
{{- define "tier1.secretManifest" -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "tier1.fullname" . }}
  labels:
    {{- include "tier1.labels" . | nindent 4 }}
type: Opaque
stringData:
  {{- range $k, $v := .Values.secrets }}
  {{ $k }}: {{ required (printf "secrets.%s is empty: set it (--set secrets.%s=...), or name a Secret holding it in existingSecret" $k $k) $v | toString | quote }}
  {{- end }}
{{- end -}}

{{/*
Fails unless given the tier1 chart's own context: `.` inside this chart, `.Subcharts.tier1` from
a parent chart (Helm >= 3.7). A parent's `$` would render the parent's image and names.
*/}}
{{- define "tier1.checkContext" -}}
{{- $ok := and (kindIs "map" .ctx) (hasKey .ctx "Chart") (hasKey .ctx "Values") -}}
{{- if or (not $ok) (ne (toString (and $ok .ctx.Chart.Name)) "tier1") -}}
{{- fail (printf "%s needs the tier1 chart's context: from a parent chart use {{ include %q .Subcharts.tier1 }} (tier1 as a dependency), inside the tier1 chart use `.`" .name .name) -}}
{{- end -}}
{{- end -}}

{{/* Pod annotations for a pod running tier1: the scrape target is the probe listener. */}}
{{- define "tier1.podAnnotations" -}}
{{- include "tier1.checkContext" (dict "ctx" . "name" "tier1.podAnnotations") -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.probes.port | quote }}
prometheus.io/path: /metrics
{{- if not .Values.existingSecret }}
checksum/secret: {{ include "tier1.secretManifest" . | sha256sum }}
{{- end }}
{{- end -}}

{{/*
tier1.sidecar: the tier1 container of sidecar mode, for a pod spec's `containers` list, or with
sidecar.native for its `initContainers` list. From a parent chart with tier1 as a dependency
(and tier1.mode=sidecar):

  containers:
    - name: my-app
      ...
    {{- include "tier1.sidecar" .Subcharts.tier1 | nindent 4 }}
  volumes:
    {{- include "tier1.volumes" .Subcharts.tier1 | nindent 4 }}
*/}}
{{- define "tier1.sidecar" -}}
{{- include "tier1.checkContext" (dict "ctx" . "name" "tier1.sidecar") -}}
{{- if ne .Values.mode "sidecar" -}}
{{- fail "tier1.sidecar: set tier1's mode to sidecar (--set tier1.mode=sidecar from a parent chart), else tier1 listens on the pod IP and also renders its central Deployment" -}}
{{- end -}}
{{- if and .Values.sidecar.native (semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "sidecar.native needs Kubernetes >= 1.29 (init containers with restartPolicy: Always); this cluster is %s: set sidecar.native=false" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- include "tier1.container" (dict "root" . "listen" "127.0.0.1:8080" "native" .Values.sidecar.native) }}
{{- end -}}

{{/*
tier1.container: the container itself; `listen` is the API address. The probe listener is always
on the pod IP, so the kubelet and Prometheus reach it even when the API is on loopback; the flags
override the config, so a user's `config` cannot move the probes away from where the probes look.
*/}}
{{- define "tier1.container" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
- name: tier1
  image: "{{ $v.image.repository }}:{{ $v.image.tag | default $root.Chart.AppVersion }}"
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args: ["--config", "/etc/tier1/tier1.toml", "--listen", {{ .listen | quote }}, "--probe-listen", "0.0.0.0:{{ $v.probes.port }}"]
  {{- if .native }}
  # A native sidecar (Kubernetes >= 1.29): started before the app containers, once its startup
  # probe passes, and stopped after them.
  restartPolicy: Always
  {{- end }}
  ports:
    {{- if not (hasPrefix "127." .listen) }}
    - name: http
      containerPort: 8080
      protocol: TCP
    {{- end }}
    - name: probes
      containerPort: {{ $v.probes.port }}
      protocol: TCP
  envFrom:
    - secretRef:
        name: {{ include "tier1.secretName" $root }}
  {{- if or $v.redis.url $v.extraEnv }}
  env:
    {{- with $v.redis.url }}
    - name: TIER1_REDIS_URL
      value: {{ . | quote }}
    {{- end }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  volumeMounts:
    - name: tier1-config
      mountPath: /etc/tier1
      readOnly: true
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if .native }}
  startupProbe:
    httpGet: { path: /readyz, port: probes }
    periodSeconds: 1
    failureThreshold: 30
  {{- end }}
  livenessProbe:
    httpGet: { path: /healthz, port: probes }
    periodSeconds: 10
    failureThreshold: 3
  readinessProbe:
    httpGet: { path: /readyz, port: probes }
    periodSeconds: 2
    failureThreshold: 1
  {{- /* The sleep action is beta and on by default from 1.30; the image is distroless (no shell
  for an exec sleep), and below 1.30 tier1's own shutdown_delay keeps it in lame duck instead. */}}
  {{- if semverCompare ">=1.30.0-0" $root.Capabilities.KubeVersion.Version }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ $v.preStopSleepSeconds }}
  {{- end }}
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities:
      drop: ["ALL"]
    seccompProfile:
      type: RuntimeDefault
{{- end -}}

{{/* tier1.volumes: the config volume (and extraVolumes), for the pod spec's `volumes` list. */}}
{{- define "tier1.volumes" -}}
{{- include "tier1.checkContext" (dict "ctx" . "name" "tier1.volumes") -}}
- name: tier1-config
  configMap:
    name: {{ include "tier1.fullname" . }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The pod-level settings shared by tier1's Deployment and the sidecar-mode app's. */}}
{{- define "tier1.podSpecCommon" -}}
serviceAccountName: {{ include "tier1.serviceAccountName" . }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
