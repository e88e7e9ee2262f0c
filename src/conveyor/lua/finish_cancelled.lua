--[[
finish_cancelled: a worker records that it stopped an active job whose cancellation was
requested; refused when the worker no longer holds the job's lock.
KEYS: meta active cancelled events marker group_active job
ARGV: #events_maxlen #keep_count #keep_ms id token
RETURNS: 1 if recorded, 0 if refused, -1 if the job's record is gone (the server lost its data)
]]
-- @include time
-- @include events
-- @include retention
-- @include let_go
local job = job_key .. id
if not let_go(id, token) then return redis.call('EXISTS', job) == 0 and -1 or 0 end
local now = now_ms()
redis.call('HSET', job, 'state', 'cancelled', 'finished_ms', now)
redis.call('ZADD', cancelled_key, int(now + keep_ms), id)
emit(events_key, events_maxlen, 'cancelled', id)
trim_finished(cancelled_key, now, keep_count)
return 1
