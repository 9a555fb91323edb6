{{/* Names ------------------------------------------------------------------------------------- */}}
{{- define "kantaloupe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kantaloupe.fullname" -}}
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

{{/* "<fullname>-<component>", kept under 63 characters. */}}
{{- define "kantaloupe.componentName" -}}
{{- printf "%s-%s" (include "kantaloupe.fullname" .root | trunc 45 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "kantaloupe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kantaloupe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kantaloupe
{{- end -}}

{{/* Labels of one component: {root, component} */}}
{{- define "kantaloupe.componentLabels" -}}
{{ include "kantaloupe.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kantaloupe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kantaloupe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Objects of the webhook, the TLS Secret and the ServiceAccounts --------------------------------- */}}
{{- define "kantaloupe.webhookConfigName" -}}
{{- include "kantaloupe.fullname" . -}}
{{- end -}}

{{- define "kantaloupe.tlsSecretName" -}}
{{- printf "%s-tls" (include "kantaloupe.fullname" .) -}}
{{- end -}}

{{- define "kantaloupe.webhookServiceName" -}}
{{- include "kantaloupe.componentName" (dict "root" . "component" "webhook") -}}
{{- end -}}

{{/* The serving certificate's DNS names (the webhook Service) and IPs (the extender on loopback). */}}
{{- define "kantaloupe.tlsDnsNames" -}}
{{- $svc := include "kantaloupe.webhookServiceName" . -}}
{{- list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) "localhost" | toJson -}}
{{- end -}}

{{- define "kantaloupe.serviceAccountName" -}}
{{- include "kantaloupe.componentName" . -}}
{{- end -}}

{{/* Image ---------------------------------------------------------------------------------------- */}}
{{- define "kantaloupe.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* kube-scheduler tag: the value, else the cluster's version without build metadata
     (v1.31.4+k3s1, v1.30.4-eks-a737599 → v1.31.4, v1.30.4), which is what registry.k8s.io publishes. */}}
{{- define "kantaloupe.kubeSchedulerTag" -}}
{{- if .Values.scheduler.kubeScheduler.image.tag -}}
{{- .Values.scheduler.kubeScheduler.image.tag -}}
{{- else -}}
{{- printf "v%s" (regexFind "[0-9]+\\.[0-9]+\\.[0-9]+" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- end -}}

{{/* Resource names ------------------------------------------------------------------------------- */}}
{{- define "kantaloupe.resourceNameList" -}}
{{- $r := .Values.resourceNames -}}
{{- list $r.gpu $r.memory $r.memoryPercentage $r.cores $r.priority | toJson -}}
{{- end -}}

{{/* kube-scheduler's managedResources: every resource name, ignored by its own fit plugin. */}}
{{- define "kantaloupe.managedResources" -}}
{{- $out := list -}}
{{- range (include "kantaloupe.resourceNameList" . | fromJsonArray) -}}
{{- $out = append $out (dict "name" . "ignoredByScheduler" true) -}}
{{- end -}}
{{- $out | toJson -}}
{{- end -}}

{{/* Users the webhook trusts to write internal pod annotations: the scheduler's and the node agent's
     service accounts, plus webhook.extraTrustedServiceAccounts. A JSON list. */}}
{{- define "kantaloupe.trustedUsers" -}}
{{- $ns := .Release.Namespace -}}
{{- $out := list -}}
{{- range list "scheduler" "node-agent" -}}
{{- $out = append $out (printf "system:serviceaccount:%s:%s" $ns (include "kantaloupe.serviceAccountName" (dict "root" $ "component" .))) -}}
{{- end -}}
{{- range .Values.webhook.extraTrustedServiceAccounts -}}
{{- $out = append $out (printf "system:serviceaccount:%s" .) -}}
{{- end -}}
{{- $out | toJson -}}
{{- end -}}

{{/* CEL: container `c` requests one of our resources (limits or requests). */}}
{{- define "kantaloupe.celRequestsGpu" -}}
{{- $quoted := list -}}
{{- range (include "kantaloupe.resourceNameList" . | fromJsonArray) -}}{{- $quoted = append $quoted (printf "'%s'" .) -}}{{- end -}}
{{- $set := printf "[%s]" (join ", " $quoted) -}}
{{- printf "has(c.resources) && ((has(c.resources.limits) && c.resources.limits.exists(r, r in %s)) || (has(c.resources.requests) && c.resources.requests.exists(r, r in %s)))" $set $set -}}
{{- end -}}

{{/* CEL: pod `p` carries an annotation under kantaloupe.io/ or hami.io/ (internal ones are guarded). */}}
{{- define "kantaloupe.celHasOurAnnotations" -}}
{{- printf "(%s != null && has(%s.metadata.annotations) && %s.metadata.annotations.exists(k, k.startsWith('kantaloupe.io/') || k.startsWith('hami.io/')))" . . . -}}
{{- end -}}

{{/* Where the TLS Secret keeps each file, which differs by issuer. */}}
{{- define "kantaloupe.tlsKeys" -}}
{{- if eq .Values.certificates.mode "job" -}}
{"cert": "cert", "key": "key", "ca": "ca"}
{{- else -}}
{"cert": "tls.crt", "key": "tls.key", "ca": "ca.crt"}
{{- end -}}
{{- end -}}

{{/* The TLS volume: the Secret's files under the same names whatever issued them. */}}
{{- define "kantaloupe.tlsVolume" -}}
{{- $keys := include "kantaloupe.tlsKeys" . | fromJson -}}
- name: tls
  secret:
    secretName: {{ include "kantaloupe.tlsSecretName" . }}
    defaultMode: 0440
    items:
      - {key: {{ $keys.cert }}, path: tls.crt}
      - {key: {{ $keys.key }}, path: tls.key}
      - {key: {{ $keys.ca }}, path: ca.crt}
{{- end -}}

{{- define "kantaloupe.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "kantaloupe.securityContext" -}}
{{- toYaml .Values.securityContext -}}
{{- end -}}
