--[[
drain: remove up to `batch` waiting or delayed jobs; call again until it returns 0.
KEYS: waiting delayed events job
ARGV: #events_maxlen #batch
RETURNS: the number of jobs removed by this call
]]
-- @include events
local removed = 0
for _, set in ipairs({waiting_key, delayed_key}) do
  local ids = redis.call('ZRANGE', set, 0, batch - removed - 1)
  for _, id in ipairs(ids) do
    redis.call('DEL', job_key .. id)
  end
  if #ids > 0 then
    redis.call('ZREM', set, unpack(ids))
    removed = removed + #ids
  end
  if removed >= batch then break end
end
if removed > 0 then
  emit(events_key, events_maxlen, 'drained', '', 'count', removed)
end
return removed
