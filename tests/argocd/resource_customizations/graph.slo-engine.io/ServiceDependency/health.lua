-- Argo CD health of a ServiceDependency (graph.slo-engine.io/v1alpha1), from the status the
-- ServiceGraph that selects it writes: Healthy when the Accepted condition is True for the
-- current generation, Progressing until a graph has reported on the current generation (an
-- object no ServiceGraph selects stays there), Degraded with Accepted's message otherwise.
-- Unresolved targets and cycle membership are graph facts, not failures: they go into the
-- message.
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
  hs.message = "Waiting for a ServiceGraph to report on this ServiceDependency (does one select it?)"
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the servicegraph operator to reconcile generation " .. generation
  return hs
end

local accepted = find(status.conditions, "Accepted")
if accepted == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Accepted condition"
  return hs
end
if generation ~= nil and accepted.observedGeneration ~= nil and accepted.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Accepted condition of generation " .. generation
  return hs
end
if accepted.status == "True" then
  hs.status = "Healthy"
  hs.message = text(accepted)
  if status.unresolvedTargets ~= nil and #status.unresolvedTargets > 0 then
    hs.message = hs.message .. "; not declared by anyone: " .. table.concat(status.unresolvedTargets, ", ")
  end
  if status.inCycle == true then
    hs.message = hs.message .. "; in a dependency cycle"
  end
  return hs
end
if accepted.status == "False" then
  hs.status = "Degraded"
  hs.message = text(accepted)
  return hs
end
hs.status = "Progressing"
hs.message = text(accepted)
return hs
