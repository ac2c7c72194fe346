{{- define "karmor.name" -}}karmor{{- end -}}

{{- define "karmor.labels" -}}
app.kubernetes.io/name: karmor
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "karmor.selectorLabels" -}}
app.kubernetes.io/name: karmor
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "karmor.tag" -}}{{ default .Chart.AppVersion .Values.image.tag }}{{- end -}}

{{- define "karmor.runtime" -}}
{{- if not (has .Values.runtime (list "containerd" "crio")) -}}
{{- fail (printf "runtime %q: want containerd or crio" .Values.runtime) -}}
{{- end -}}
{{- .Values.runtime -}}
{{- end -}}

{{/* The hook's settings, the same for the init step and karmor-nri. */}}
{{- define "karmor.hookArgs" -}}
- --socket
- /run/karmor/karmor.sock
- --spool-dir
- /var/lib/karmor/spool
{{- end -}}

{{/* karmor-controller's pods: a name of their own, so that no selector of karmord's matches them. */}}
{{- define "karmor.controllerSelectorLabels" -}}
app.kubernetes.io/name: karmor-controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "karmor.controllerLabels" -}}
{{ include "karmor.controllerSelectorLabels" . }}
app.kubernetes.io/component: controller
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
