-- Argo CD health check for cvs.dev/ClusteredStream (argocd-cm key
-- resource.customizations.health.cvs.dev_ClusteredStream). Argo CD runs it with the live object
-- in `obj` (gopher-lua, Lua 5.1); tests/argocd/run.sh runs it on sample objects of every state.
--
--   Degraded     a condition reports a failure: Ready=False (no instance, too few open and
--                healthy), Degraded=True (an instance closed, unhealthy or held open for minOpen),
--                StateSynced, TableReplicated, EventsDelivered, Published or EdgeDeployed False;
--   Progressing  no status yet, a spec generation not observed yet, or a result still awaited
--                (Ready, Degraded or TableReplicated Unknown);
--   Healthy      otherwise, with the Ready condition's message.
-- Each message is the condition's own: `Type=Status Reason: message`.
local hs = {}

local function describe(c)
  local text = c.type .. "=" .. c.status
  if c.reason ~= nil and c.reason ~= "" then
    text = text .. " " .. c.reason
  end
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local status = obj.status
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = string.format("Waiting for the operator to observe generation %d", generation)
  return hs
end

local by_type = {}
for _, c in ipairs(status.conditions) do
  if c.type ~= nil then
    by_type[c.type] = c
  end
end

-- Failures, in the order an operator should read them.
local failed = {}
for _, t in ipairs({ "Ready", "StateSynced", "TableReplicated", "EventsDelivered", "Published", "EdgeDeployed" }) do
  local c = by_type[t]
  if c ~= nil and c.status == "False" then
    table.insert(failed, describe(c))
  end
end
if by_type["Degraded"] ~= nil and by_type["Degraded"].status == "True" then
  table.insert(failed, describe(by_type["Degraded"]))
end
if #failed > 0 then
  hs.status = "Degraded"
  hs.message = table.concat(failed, "; ")
  return hs
end

for _, t in ipairs({ "Ready", "Degraded", "TableReplicated" }) do
  local c = by_type[t]
  if c ~= nil and c.status == "Unknown" then
    hs.status = "Progressing"
    hs.message = describe(c)
    return hs
  end
end

local ready = by_type["Ready"]
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
hs.status = "Healthy"
hs.message = describe(ready)
return hs
