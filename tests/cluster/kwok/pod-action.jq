# What a kubelet would do next with this pod, as one word. Every pod stage in
# stages.yaml.in matches exactly one word, so no two stages compete for a pod.
# Order matters: termination first, then start, image changes, condition sync,
# and container readiness last. The stages that change containers write the
# conditions with them, as kubelet does; "sync-ready" is for the writes of others
# (a readiness gate flipped).
def cond($t): ([.status.conditions[]? | select(.type == $t)][0].status // "");
def want($ok): if $ok then "True" else "False" end;
if .metadata.deletionTimestamp != null then
  (if cond("Ready") == "True" or ([.status.containerStatuses[]? | select(.ready)] | length) > 0
   then "terminate"
   elif ((.metadata.finalizers // []) | length) == 0 then "delete"
   else "none" end)
elif (.status.podIP // "") == "" or (.status.phase // "Pending") == "Pending" then "start"
elif ([.spec.containers[] as $c
       | ([.status.containerStatuses[]? | select(.name == $c.name)][0].image // "") != $c.image]
      | any) then "restart"
else
  ([.status.containerStatuses[]? | .ready] | all) as $containers
  | ([.spec.readinessGates[]?.conditionType] as $gates
     | [$gates[] as $g | cond($g) == "True"] | all) as $gates
  | if cond("ContainersReady") != want($containers) or cond("Ready") != want($containers and $gates)
    then "sync-ready"
    elif ([.status.containerStatuses[]?
           | select((.ready | not) and ((.image | contains("crashloop")) | not))] | length) > 0
    then "ready-containers"
    else "none" end
end
