-- Argo CD health check for cvs.dev/StreamInstance (argocd-cm key
-- resource.customizations.health.cvs.dev_StreamInstance). Argo CD runs it with the live object
-- in `obj` (gopher-lua, Lua 5.1); tests/argocd/run.sh runs it on sample objects of every state.
--
--   Degraded     its ClusteredStream does not exist (Bound=False), another instance claims its
--                domain (DomainUnique=False), its playlists are stale (Healthy=False), or it was
--                failed over (Open reason FailedOver), or it was asked to close but is held open
--                for minOpen (Open reason HeldOpenForMinOpen);
--   Progressing  no status yet, a spec generation not observed yet, no probe verdict yet
--                (Healthy=Unknown), no open decision yet, or healthy again and waiting for the
--                failover hold-down before it reopens (Open reason HoldDown);
--   Healthy      otherwise: open and fresh, or closed on purpose (spec.distroOpen false).
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
local bound, unique = by_type["Bound"], by_type["DomainUnique"]
local healthy, open = by_type["Healthy"], by_type["Open"]

local failed = {}
if bound ~= nil and bound.status == "False" then
  table.insert(failed, describe(bound))
end
if unique ~= nil and unique.status == "False" then
  table.insert(failed, describe(unique))
end
if healthy ~= nil and healthy.status == "False" then
  table.insert(failed, describe(healthy))
end
if open ~= nil and (open.reason == "HeldOpenForMinOpen" or open.reason == "FailedOver") then
  table.insert(failed, describe(open))
end
if #failed > 0 then
  hs.status = "Degraded"
  hs.message = table.concat(failed, "; ")
  return hs
end

if healthy == nil or healthy.status ~= "True" then
  hs.status = "Progressing"
  hs.message = healthy ~= nil and describe(healthy) or "Waiting for a probe verdict"
  return hs
end
if open == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the ClusteredStream's open decision"
  return hs
end
if open.reason == "HoldDown" then
  hs.status = "Progressing"
  hs.message = describe(open)
  return hs
end

hs.status = "Healthy"
if open.status == "True" then
  hs.message = describe(healthy)
else
  hs.message = describe(open)
end
return hs
