{{/*
One kopf operator as a Deployment: standalone kopf (no peering), so one replica and Recreate
(never two at once); kopf's liveness endpoint probed; Pod Security "restricted".
(dict "root" $ "component" "resource-manager" "account" "fluidos-sensors-resource-manager"
      "values" .Values.provider.resourceManager "args" (list ...))
*/}}
{{- define "fs.operator" -}}
{{- $root := .root }}
{{- $v := .values }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: fluidos-sensors-{{ .component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "fs.componentLabels" . | nindent 4 }}
spec:
  replicas: {{ $v.replicas }}
  strategy:
    type: Recreate
  selector:
    matchLabels:
      {{- include "fs.selector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "fs.componentLabels" . | nindent 8 }}
        {{- with $v.pod.labels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.pod.annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ .account }}
      automountServiceAccountToken: true
      securityContext:
        {{- include "fs.restrictedPod" . | nindent 8 }}
      {{- include "fs.commonScheduling" $root | nindent 6 }}
      containers:
        - name: {{ .component }}
          image: {{ include "fs.image" $root }}
          imagePullPolicy: {{ $root.Values.pullPolicy }}
          args:
            {{- range .args }}
            - {{ . | quote }}
            {{- end }}
            - --liveness
            - http://0.0.0.0:{{ $v.config.livenessPort }}/healthz
            {{- range (concat $root.Values.common.extraArgs $v.pod.extraArgs) }}
            - {{ . | quote }}
            {{- end }}
          env:
            {{- include "fs.identityEnv" $root | nindent 12 }}
          ports:
            - {name: liveness, containerPort: {{ $v.config.livenessPort }}}
          livenessProbe:
            httpGet: {path: /healthz, port: liveness}
            initialDelaySeconds: 30
            periodSeconds: 30
            timeoutSeconds: 10
            failureThreshold: 3
          resources:
            {{- toYaml $v.pod.resources | nindent 12 }}
          securityContext:
            {{- include "fs.restrictedContainer" . | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
      volumes:
        {{- include "fs.tmpVolume" . | nindent 8 }}
{{- end }}

{{- define "fs.identityEnv" -}}
- name: FLUIDOS_NODE_ID
  value: {{ include "fs.nodeId" . | quote }}
- name: FLUIDOS_DOMAIN
  value: {{ .Values.common.nodeIdentity.domain | quote }}
- name: FLUIDOS_NODE_IP
  value: {{ required "common.nodeIdentity.ip is required (the address other clusters reach this one at)" .Values.common.nodeIdentity.ip | quote }}
{{- end }}
