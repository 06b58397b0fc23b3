{{- define "tier1.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tier1.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tier1.labels" -}}
app.kubernetes.io/name: {{ include "tier1.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tier1.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tier1.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tier1.secretName" -}}
{{- default (include "tier1.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/*
tier1.sidecar: the tier1 container, to put in any pod spec's `containers` list:

  containers:
    - name: my-app
      ...
    {{- include "tier1.sidecar" (dict "root" $ "listen" "127.0.0.1:8080") | nindent 4 }}

and mount the config with `tier1.volumes` under the pod's `volumes`.
*/}}
{{- define "tier1.sidecar" -}}
{{- $root := .root -}}
- name: tier1
  image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}"
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args: ["--config", "/etc/tier1/tier1.toml", "--listen", {{ .listen | default "0.0.0.0:8080" | quote }}]
  ports:
    - name: http
      containerPort: 8080
      protocol: TCP
  envFrom:
    - secretRef:
        name: {{ include "tier1.secretName" $root }}
  {{- with $root.Values.redis.url }}
  env:
    - name: TIER1_REDIS_URL
      value: {{ . | quote }}
  {{- end }}
  volumeMounts:
    - name: tier1-config
      mountPath: /etc/tier1
      readOnly: true
    {{- with $root.Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  livenessProbe:
    httpGet: { path: /healthz, port: 8080 }
    periodSeconds: 10
    failureThreshold: 3
  readinessProbe:
    httpGet: { path: /readyz, port: 8080 }
    periodSeconds: 2
    failureThreshold: 1
  lifecycle:
    preStop:
      sleep:
        seconds: {{ $root.Values.preStopSleepSeconds }}
  resources:
    {{- toYaml $root.Values.resources | nindent 4 }}
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

{{- define "tier1.volumes" -}}
- name: tier1-config
  configMap:
    name: {{ include "tier1.fullname" . }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}
