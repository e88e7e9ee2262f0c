--[[
rate_limited: a handler heard "slow down" from downstream. The whole queue starts no job
for throttle_ms, and the job goes back to the front of the queue without spending an
attempt.
KEYS: meta waiting active events marker groups group_waiting group_active job
ARGV: #events_maxlen #throttle_ms id token
RETURNS: 1 if handed back, 0 if the worker no longer held the job's lock
]]
-- @include time
-- @include events
-- @include waiting
-- @include group_slots
local now = now_ms()
local until_ms = now + throttle_ms
if until_ms > tonumber(redis.call('HGET', meta_key, 'throttled_until') or 0) then
  redis.call('HSET', meta_key, 'throttled_until', until_ms)
end
emit(events_key, events_maxlen, 'throttled', id, 'ms', throttle_ms)
local job = job_key .. id
if redis.call('HGET', job, 'token') ~= token or not redis.call('ZSCORE', active_key, id) then
  return 0
end
redis.call('ZREM', active_key, id)
redis.call('HDEL', job, 'token')
group_done(id)
redis.call('HINCRBY', job, 'attempt', -1)
redis.call('HSET', job, 'state', 'waiting')
local head = redis.call('HINCRBY', meta_key, 'head', 1)
to_waiting(id, tonumber(redis.call('HGET', job, 'band')) - head)
emit(events_key, events_maxlen, 'waiting', id, 'released', '1')
wake(marker_key)
return 1
