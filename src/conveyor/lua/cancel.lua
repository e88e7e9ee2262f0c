--[[
cancel: cancel a job from anywhere. A waiting or delayed job becomes cancelled at once; an
active job is flagged, and the worker holding it stops it (it learns at its next lock
renewal) and records it as cancelled. Finished jobs are left as they are.
KEYS: meta waiting delayed cancelled events groups group_waiting job
ARGV: #events_maxlen #keep_ms id
RETURNS: 'cancelled', 'requested' (active), the unchanged state of a finished job, or
  false when there is no such job
]]
-- @include time
-- @include events
-- @include queued
-- @include waiting
local job = job_key .. id
local state = redis.call('HGET', job, 'state')
if not state then return false end
if state == 'active' then
  redis.call('HSET', job, 'cancel_requested', '1')
  emit(events_key, events_maxlen, 'cancel_requested', id)
  return 'requested'
end
if not queued(state) then return state end
local now = now_ms()
from_waiting(id)
redis.call('ZREM', delayed_key, id)
redis.call('HSET', job, 'state', 'cancelled', 'finished_ms', now)
redis.call('ZADD', cancelled_key, int(now + keep_ms), id)
emit(events_key, events_maxlen, 'cancelled', id)
return 'cancelled'
