{{/* The fluidos-sensors image, tag from `tag` or the chart's appVersion. */}}
{{- define "fs.image" -}}
{{ .Values.image.repository }}:{{ .Values.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "fs.labels" -}}
app.kubernetes.io/part-of: fluidos-sensors
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "rear-gateway") */}}
{{- define "fs.selector" -}}
app.kubernetes.io/name: fluidos-sensors-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{- define "fs.componentLabels" -}}
{{ include "fs.labels" .root }}
{{ include "fs.selector" . }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Pod Security "restricted" for a container: non-root, nothing gained, read-only root. */}}
{{- define "fs.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "fs.restrictedPod" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Scheduling of control-plane parts (provider, consumer): common.* */}}
{{- define "fs.commonScheduling" -}}
{{- with .Values.common.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.common.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.common.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "fs.nodeId" -}}
{{- required "common.nodeIdentity.nodeId is required (this cluster's FLUIDOS node id)" .Values.common.nodeIdentity.nodeId -}}
{{- end }}

{{/* A value kept across upgrades: the existing Secret's key, else a fresh random string.
     (dict "root" $ "secret" NAME "key" KEY "length" N) */}}
{{- define "fs.keptRandom" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (hasKey ($existing.data | default dict) .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (.length | default 32) -}}
{{- end -}}
{{- end }}

{{/* A /tmp emptyDir for parts whose root filesystem is read-only. */}}
{{- define "fs.tmpVolume" -}}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- end }}

{{/* Scheduling of the edge DaemonSets: edge.* */}}
{{- define "fs.edgeScheduling" -}}
{{- with .Values.edge.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.edge.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.edge.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
