--[[
finish_cancelled: a worker records that it stopped an active job whose cancellation was
requested; refused when the worker no longer holds the job's lock.
KEYS: meta active cancelled events marker group_active job
ARGV: #events_maxlen #keep_count #keep_ms id token
RETURNS: 1 if recorded, 0 if refused
]]
-- @include time
-- @include events
-- @include retention
-- @include group_slots
local job = job_key .. id
if redis.call('HGET', job, 'token') ~= token or not redis.call('ZSCORE', active_key, id) then
  return 0
end
local now = now_ms()
redis.call('ZREM', active_key, id)
redis.call('HDEL', job, 'token')
group_done(id)
redis.call('HSET', job, 'state', 'cancelled', 'finished_ms', now)
redis.call('ZADD', cancelled_key, int(now + keep_ms), id)
emit(events_key, events_maxlen, 'cancelled', id)
trim_finished(cancelled_key, job_key, now, keep_count)
return 1
