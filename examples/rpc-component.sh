#!/usr/bin/env bash
# An external traffic component, as a registry (RPC, DNS, a load balancer)
# would implement cafe-operator's traffic protocol (docs/traffic-protocol.md).
# It is the `rpc` component of the e2e tests; it needs only bash and kubectl.
#
#   examples/rpc-component.sh NAMESPACE [COMPONENT]
#
# For every pod that declares COMPONENT (default: rpc) in its annotation
# cafe.sofastack.io/traffic-components it
#  - registers the pod (adds finalizer traffic.cafe.sofastack.io/COMPONENT)
#    once the traffic gate cafe.sofastack.io/traffic-ready is True and the pod
#    is Ready: a real registry adds it to its backend first and adds the
#    finalizer only once the backend routes to the pod;
#  - deregisters the pod (removes its own finalizer, and only that) once the
#    gate is False or the pod is terminating: a real registry removes it from
#    its backend first and waits until no client routes to it any more.
# A missing gate condition means "not in traffic". Finalizer edits are single
# JSON-patch operations guarded by a `test`, never a rewrite of the list.
set -uo pipefail

NAMESPACE="${1:?usage: rpc-component.sh NAMESPACE [COMPONENT]}"
COMPONENT="${2:-rpc}"
FINALIZER="traffic.cafe.sofastack.io/$COMPONENT"
GATE="cafe.sofastack.io/traffic-ready"
INTERVAL="${INTERVAL:-0.3}"

# One line per pod: name resourceVersion components gate ready terminating finalizers
TEMPLATE='{{range .items}}{{.metadata.name}} {{.metadata.resourceVersion}} '\
'{{with .metadata.annotations}}{{index . "cafe.sofastack.io/traffic-components"}}{{end}}, '\
'{{range .status.conditions}}{{if eq .type "'"$GATE"'"}}{{.status}}{{end}}{{end}}- '\
'{{range .status.conditions}}{{if eq .type "Ready"}}{{.status}}{{end}}{{end}}- '\
'{{if .metadata.deletionTimestamp}}terminating{{else}}running{{end}} '\
'{{range .metadata.finalizers}}{{.}},{{end}}{{"\n"}}{{end}}'

patch() { # patch POD TYPE PATCH
    kubectl -n "$NAMESPACE" patch pod "$1" --type "$2" -p "$3" >/dev/null 2>&1 || true
}

while true; do
    kubectl -n "$NAMESPACE" get pods -o go-template="$TEMPLATE" 2>/dev/null |
        while read -r name rv components gate ready state finalizers; do
            case ",$components" in *",$COMPONENT,"*) ;; *) continue ;; esac
            in_traffic=no
            [ "$gate" = "True-" ] && [ "$ready" = "True-" ] && [ "$state" = running ] && in_traffic=yes
            index=-1 i=0
            IFS=',' read -ra list <<<"${finalizers:-}"
            for f in "${list[@]}"; do
                [ "$f" = "$FINALIZER" ] && index=$i
                i=$((i + 1))
            done
            if [ "$in_traffic" = yes ] && [ "$index" -lt 0 ]; then
                # Finalizers merge as a set: ours is added, others are kept.
                patch "$name" strategic '{"metadata":{"finalizers":["'"$FINALIZER"'"]}}'
                echo "registered $name"
            elif [ "$in_traffic" = no ] && [ "$index" -ge 0 ]; then
                patch "$name" json '[{"op":"test","path":"/metadata/finalizers/'"$index"'","value":"'"$FINALIZER"'"},{"op":"remove","path":"/metadata/finalizers/'"$index"'"}]'
                echo "deregistered $name"
            fi
        done
    sleep "$INTERVAL"
done
