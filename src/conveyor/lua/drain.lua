--[[
drain: remove up to `batch` waiting or delayed jobs; call again until it returns 0.
KEYS: meta waiting delayed events groups group_waiting job
ARGV: #events_maxlen #batch
RETURNS: the number of jobs removed by this call
]]
-- @include events
-- @include delete_jobs
local removed = 0
for _, set in ipairs({waiting_key, delayed_key}) do
  removed = removed + delete_jobs(set, redis.call('ZRANGE', set, 0, batch - removed - 1))
  if removed >= batch then break end
end
-- Grouped waiting jobs, group by group.
while removed < batch do
  local group = redis.call('ZRANGE', groups_key, 0, 0)[1]
  if not group then break end
  local set = group_waiting_key .. group
  local deleted = delete_jobs(set, redis.call('ZRANGE', set, 0, batch - removed - 1))
  if deleted > 0 then
    redis.call('HINCRBY', meta_key, 'grouped', -deleted)
    removed = removed + deleted
  end
  if redis.call('ZCARD', set) == 0 then redis.call('ZREM', groups_key, group) end
end
if removed > 0 then
  emit(events_key, events_maxlen, 'drained', '', 'count', removed)
end
return removed
