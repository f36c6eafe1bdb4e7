{{/* Chart name, overridable. */}}
{{- define "weft.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-<chart> unless the release name already contains the chart name. */}}
{{- define "weft.fullname" -}}
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

{{/* The component label: agent, gateway or sidecar. */}}
{{- define "weft.component" -}}
{{- if eq .Values.mode "daemonset" -}}agent
{{- else if eq .Values.mode "deployment" -}}gateway
{{- else -}}sidecar
{{- end -}}
{{- end -}}

{{- define "weft.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weft.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ include "weft.component" . }}
{{- end -}}

{{- define "weft.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "weft.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: weft
{{- end -}}

{{- define "weft.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "weft.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "weft.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Fails rendering on a mode the chart does not know. */}}
{{- define "weft.checkMode" -}}
{{- if not (has .Values.mode (list "daemonset" "deployment" "sidecar")) -}}
{{- fail (printf "mode must be one of daemonset, deployment, sidecar (got %q)" .Values.mode) -}}
{{- end -}}
{{- end -}}

{{/*
The weft configuration as rendered into the ConfigMap: .Values.config plus the
resourcedetection preset. Also checks that the admin endpoint is on port 13133, which
the probes use.
*/}}
{{- define "weft.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $admin := dig "extensions" "health_check" "endpoint" "" $config -}}
{{- if not (hasSuffix ":13133" (toString $admin)) -}}
{{- fail (printf "config.extensions.health_check.endpoint must listen on port 13133 (the probes use it), e.g. 0.0.0.0:13133; got %q" (toString $admin)) -}}
{{- end -}}
{{- if and .Values.presets.resourceDetection.enabled (ne .Values.mode "deployment") -}}
{{- $rd := dict "detectors" (list "env") "override" false -}}
{{- if eq .Values.mode "daemonset" -}}
{{- $_ := set $rd "env" (dict "allow_list" (list "k8s.node.name")) -}}
{{- else -}}
{{- $_ := set $rd "env" (dict "allow_list" (list "k8s.node.name" "k8s.pod.name" "k8s.namespace.name")) -}}
{{- end -}}
{{- $processors := default (dict) $config.processors -}}
{{- $_ := set $processors "resourcedetection/k8s" $rd -}}
{{- $_ := set $config "processors" $processors -}}
{{- range $name, $pipeline := (dig "service" "pipelines" (dict) $config) -}}
{{- $new := list -}}
{{- $done := false -}}
{{- range $p := (default (list) $pipeline.processors) -}}
{{- $new = append $new $p -}}
{{- if and (not $done) (or (eq $p "memory_limiter") (hasPrefix "memory_limiter/" $p)) -}}
{{- $new = append $new "resourcedetection/k8s" -}}
{{- $done = true -}}
{{- end -}}
{{- end -}}
{{- if not $done -}}
{{- $new = prepend $new "resourcedetection/k8s" -}}
{{- end -}}
{{- $_ := set $pipeline "processors" $new -}}
{{- end -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Downward-API variables read once at start by the `env` detector. */}}
{{- define "weft.downwardEnv" -}}
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}

{{/*
The weft container. Argument: dict "root" $ "sidecar" bool. In a sidecar the ports are
prefixed so they cannot clash with the application's, and only the admin port is
declared (the application reaches OTLP on localhost).
*/}}
{{- define "weft.container" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $admin := ternary "weft-admin" "admin" .sidecar -}}
- name: weft
  image: {{ include "weft.image" $root }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if and .sidecar $v.sidecar.native }}
  restartPolicy: Always
  {{- end }}
  args:
    - --config
    - /etc/weft/weft.yaml
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  ports:
    {{- if not .sidecar }}
    - name: otlp-grpc
      containerPort: 4317
      protocol: TCP
    - name: otlp-http
      containerPort: 4318
      protocol: TCP
    {{- end }}
    - name: {{ $admin }}
      containerPort: 13133
      protocol: TCP
  env:
    {{- include "weft.downwardEnv" $root | nindent 4 }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  startupProbe:
    httpGet:
      path: /health/live
      port: {{ $admin }}
    periodSeconds: {{ $v.probes.startup.periodSeconds }}
    failureThreshold: {{ $v.probes.startup.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /health/live
      port: {{ $admin }}
    periodSeconds: {{ $v.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ $v.probes.liveness.failureThreshold }}
  readinessProbe:
    httpGet:
      path: /health/ready
      port: {{ $admin }}
    periodSeconds: {{ $v.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ $v.probes.readiness.failureThreshold }}
  {{- if gt (int $v.lifecycle.preStopSleepSeconds) 0 }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ $v.lifecycle.preStopSleepSeconds }}
  {{- end }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
    {{- if .sidecar }}
    {{- /* The application's pod securityContext is not ours to set: carry the user here. */}}
    {{- with $v.podSecurityContext.runAsUser }}
    runAsUser: {{ . }}
    {{- end }}
    {{- with $v.podSecurityContext.runAsGroup }}
    runAsGroup: {{ . }}
    {{- end }}
    {{- with $v.podSecurityContext.seccompProfile }}
    seccompProfile:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- end }}
  volumeMounts:
    - name: weft-config
      mountPath: /etc/weft
      readOnly: true
    {{- if not .sidecar }}
    - name: tmp
      mountPath: /tmp
    {{- end }}
{{- end -}}

{{/* Pod spec shared by the DaemonSet and the Deployment. */}}
{{- define "weft.podSpec" -}}
{{- $v := .Values -}}
serviceAccountName: {{ include "weft.serviceAccountName" . }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $tolerations := $v.tolerations -}}
{{- if and (eq $v.mode "daemonset") $v.tolerateAllTaints -}}
{{- $tolerations = append $tolerations (dict "operator" "Exists") -}}
{{- end -}}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  {{- include "weft.container" (dict "root" . "sidecar" false) | nindent 2 }}
volumes:
  - name: weft-config
    configMap:
      name: {{ include "weft.fullname" . }}
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- end -}}

{{/* Pod template metadata shared by the DaemonSet and the Deployment. */}}
{{- define "weft.podMetadata" -}}
labels:
  {{- include "weft.labels" . | nindent 2 }}
  {{- with .Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  # Restarts the pods when the configuration changes.
  checksum/config: {{ include "weft.config" . | sha256sum }}
  {{- with .Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* The strategic-merge patch that adds weft to an application Deployment (sidecar mode). */}}
{{- define "weft.sidecarPatch" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Values.sidecar.deploymentName }}
  namespace: {{ .Release.Namespace }}
spec:
  template:
    metadata:
      annotations:
        checksum/weft-config: {{ include "weft.config" . | sha256sum }}
    spec:
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      {{- if .Values.sidecar.native }}
      initContainers:
      {{- else }}
      containers:
      {{- end }}
        {{- include "weft.container" (dict "root" . "sidecar" true) | nindent 8 }}
      {{- if .Values.sidecar.native }}
      containers:
      {{- end }}
        - name: {{ .Values.sidecar.appContainerName }}
          env:
            - name: OTEL_EXPORTER_OTLP_ENDPOINT
              value: http://localhost:4317
      volumes:
        - name: weft-config
          configMap:
            name: {{ include "weft.fullname" . }}
{{- end -}}
