-- Argo CD health check for CafeDeployment (cafe.sofastack.io/v1alpha1).
-- Healthy: the release is complete. Suspended: a group waits for a person
-- (confirmation) or the release is paused. Degraded: stalled (a deadline, a
-- drain that timed out, an invalid spec). Progressing: pods are moving, a
-- group's metric analysis is running (Analyzing), or the operator has not
-- observed the latest spec yet.
local hs = {}
local status = obj.status
if status == nil or status.observedGeneration == nil
    or obj.metadata.generation == nil
    or status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the latest spec"
  return hs
end
local message = ""
if status.release ~= nil and status.release.message ~= nil then
  message = status.release.message
end
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.type == "Stalled" and c.status == "True" then
      hs.status = "Degraded"
      hs.message = c.reason .. ": " .. (c.message or message)
      return hs
    end
  end
end
local phase = status.phase
if phase == "Healthy" then
  hs.status = "Healthy"
elseif phase == "WaitingForConfirm" or phase == "Paused" then
  hs.status = "Suspended"
elseif phase == "Stalled" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = message
return hs
