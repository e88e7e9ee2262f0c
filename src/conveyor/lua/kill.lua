--[[
kill: an operator sends a waiting or delayed job straight to the dead-letter set.
KEYS: meta waiting delayed dead events groups group_waiting job
ARGV: #events_maxlen #dead_keep_age_ms id
RETURNS: 1 if killed, 0 if no such job; error CONVEYOR_STATE if it is not waiting/delayed
]]
-- @include time
-- @include events
-- @include queued
-- @include waiting
local job = job_key .. id
local state, refused = queued_state(id)
if refused then return refused end
if not state then return 0 end
local now = now_ms()
from_waiting(id)
redis.call('ZREM', delayed_key, id)
redis.call('HSET', job, 'state', 'dead', 'reason', 'killed', 'finished_ms', now)
redis.call('ZADD', dead_key, int(now + dead_keep_age_ms), id)
emit(events_key, events_maxlen, 'dead', id, 'reason', 'killed')
return 1
