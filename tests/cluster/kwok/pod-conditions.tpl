      {{- /* Kubelet's rule, spliced into every stage that changes containers
      or readiness (as @POD_CONDITIONS@): ContainersReady is every container
      of $statuses ready; Ready is that AND every spec.readinessGates condition
      True. A condition's time is carried over only when its status stays and
      it has one: other controllers legally write `lastTransitionTime: null`,
      which is not a time to parse. Needs $pod, $now and $statuses. */ -}}
      {{ $unready := list }}
      {{ range $statuses }}{{ if not .ready }}{{ $unready = append $unready .name }}{{ end }}{{ end }}
      {{ $gateMsg := "" }}
      {{ range $pod.spec.readinessGates }}{{ $t := .conditionType }}{{ $st := "" }}{{ range $pod.status.conditions }}{{ if eq .type $t }}{{ $st = .status }}{{ end }}{{ end }}{{ if ne $st "True" }}{{ if eq $st "" }}{{ $gateMsg = printf "corresponding condition of pod readiness gate %q does not exist." $t }}{{ else }}{{ $gateMsg = printf "the status of pod readiness gate %q is not \"True\", but %s" $t $st }}{{ end }}{{ end }}{{ end }}
      {{ $containersReady := eq (len $unready) 0 }}
      {{ $ready := and $containersReady (eq $gateMsg "") }}
      {{ $oldCR := dict }}{{ $oldR := dict }}
      {{ range $pod.status.conditions }}{{ if eq .type "ContainersReady" }}{{ $oldCR = . }}{{ end }}{{ if eq .type "Ready" }}{{ $oldR = . }}{{ end }}{{ end }}
      {{ $crStatus := ternary "True" "False" $containersReady }}
      {{ $rStatus := ternary "True" "False" $ready }}
      conditions:
      - type: ContainersReady
        status: {{ $crStatus | Quote }}
        lastTransitionTime: {{ $t := get $oldCR "lastTransitionTime" }}{{ if and (eq (get $oldCR "status") $crStatus) $t }}{{ $t | Quote }}{{ else }}{{ $now | Quote }}{{ end }}
        {{ if $containersReady }}reason: null
        message: null{{ else }}reason: ContainersNotReady
        message: {{ printf "containers with unready status: [%s]" (join " " $unready) | Quote }}{{ end }}
      - type: Ready
        status: {{ $rStatus | Quote }}
        lastTransitionTime: {{ $t := get $oldR "lastTransitionTime" }}{{ if and (eq (get $oldR "status") $rStatus) $t }}{{ $t | Quote }}{{ else }}{{ $now | Quote }}{{ end }}
        {{ if $ready }}reason: null
        message: null{{ else if not $containersReady }}reason: ContainersNotReady
        message: {{ printf "containers with unready status: [%s]" (join " " $unready) | Quote }}{{ else }}reason: ReadinessGatesNotReady
        message: {{ $gateMsg | Quote }}{{ end }}
