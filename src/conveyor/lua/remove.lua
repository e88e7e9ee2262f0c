--[[
remove: delete a job that is not active.
KEYS: meta @idle_states events groups group_waiting job
ARGV: #events_maxlen id
RETURNS: 1 if removed, 0 if there is no such job; error CONVEYOR_ACTIVE if it is active
]]
-- @include time
-- @include events
-- @include waiting
local job = job_key .. id
local state = redis.call('HGET', job, 'state')
if not state then return 0 end
if state == 'active' then
  return redis.error_reply('CONVEYOR_ACTIVE job ' .. id .. ' is active')
end
from_waiting(id)
for _, s in ipairs(job_states) do  -- every state but active: a job in two sets leaves both
  if s.name ~= 'waiting' then redis.call('ZREM', s.key, id) end
end
redis.call('DEL', job)
emit(events_key, events_maxlen, 'removed', id, 'state', state)
return 1
