--[[
kill: an operator sends a waiting or delayed job straight to the dead-letter set.
KEYS: meta waiting delayed dead events groups group_waiting job
ARGV: #events_maxlen #dead_keep_age_ms id
RETURNS: 1 if killed, 0 if no such job; error CONVEYOR_STATE if it is not waiting/delayed
]]
-- @include time
-- @include events
-- @include waiting
local job = job_key .. id
local state = redis.call('HGET', job, 'state')
if not state then return 0 end
if state ~= 'waiting' and state ~= 'delayed' then
  return redis.error_reply('CONVEYOR_STATE job ' .. id .. ' is ' .. state)
end
local now = now_ms()
from_waiting(id)
redis.call('ZREM', delayed_key, id)
redis.call('HSET', job, 'state', 'dead', 'reason', 'killed', 'finished_ms', now)
redis.call('ZADD', dead_key, int(now + dead_keep_age_ms), id)
emit(events_key, events_maxlen, 'dead', id, 'reason', 'killed')
return 1
