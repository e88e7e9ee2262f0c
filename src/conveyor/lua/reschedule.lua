--[[
reschedule: make a waiting or delayed job due delay_ms from now (0 promotes it to run now).
KEYS: meta waiting delayed events marker groups group_waiting job
ARGV: #events_maxlen id #delay_ms
RETURNS: the job's new state; error CONVEYOR_STATE if not waiting/delayed, false if none
]]
-- @include time
-- @include events
-- @include queued
-- @include add_job
local job = job_key .. id
local state, refused = queued_state(id)
if refused then return refused end
if not state then return false end
local now = now_ms()
from_waiting(id)
redis.call('ZREM', delayed_key, id)
state = place(id, whole(redis.call('HGET', job, 'band')) or 0, now + delay_ms, now)
redis.call('HSET', job, 'state', state, 'due_ms', now + delay_ms)
emit(events_key, events_maxlen, state, id, 'rescheduled', '1')
wake(marker_key)
return state
