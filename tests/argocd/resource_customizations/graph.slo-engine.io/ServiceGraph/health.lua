-- Argo CD health of a ServiceGraph (graph.slo-engine.io/v1alpha1), from the operator's status:
-- Healthy when the Ready condition is True for the current generation, Progressing until the
-- operator has reconciled the current generation, Degraded with Ready's message otherwise.
-- Cycles and an unhealthy observed source do not make a graph unhealthy: they are reported
-- in the message (and by the operator's alerts).
local hs = {}

local function find(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == kind then
      return condition
    end
  end
  return nil
end

local function text(condition)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return condition.reason or ""
end

local generation = obj.metadata.generation
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the servicegraph operator to reconcile this ServiceGraph"
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the servicegraph operator to reconcile generation " .. generation
  return hs
end

local ready = find(status.conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition of generation " .. generation
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready)
  local acyclic = find(status.conditions, "Acyclic")
  if acyclic ~= nil and acyclic.status == "False" then
    hs.message = hs.message .. "; " .. text(acyclic)
  end
  local observed = find(status.conditions, "ObservedSourceHealthy")
  if observed ~= nil and observed.status == "False" then
    hs.message = hs.message .. "; observed source unhealthy: " .. text(observed)
  end
  return hs
end
if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = text(ready)
  return hs
end
hs.status = "Progressing"
hs.message = text(ready)
return hs
