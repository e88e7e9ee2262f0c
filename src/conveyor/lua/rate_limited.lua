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
-- @include hand_back
local now = now_ms()
local until_ms = now + throttle_ms
if until_ms > tonumber(redis.call('HGET', meta_key, 'throttled_until') or 0) then
  redis.call('HSET', meta_key, 'throttled_until', until_ms)
end
emit(events_key, events_maxlen, 'throttled', id, 'ms', throttle_ms)
if not hand_back(id, token) then return 0 end
wake(marker_key)
return 1
