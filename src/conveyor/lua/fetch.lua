--[[
fetch: promote due delayed jobs, then give up to `count` waiting jobs to a worker,
highest priority first and FIFO within a priority, each with a lock until now + lock_ttl_ms,
within the queue's limits (meta: concurrency_max, rate_max per rate_period_ms,
throttled_until).
KEYS: meta waiting delayed active events marker rate job
ARGV: #events_maxlen #count worker_id token_base #lock_ttl_ms #promote_limit
RETURNS: {status, now, ms_to_wait_or_-1, claim fields of each job...}
  status is 'ok', 'paused' or 'limited'; ms_to_wait is until the next delayed job (ok,
  paused) or until a limit lets a job start (limited; -1: until a running job ends).
  Claim fields are CLAIM_FIELDS then the lock token, per job.
]]
-- @include time
-- @include events
-- @include claim
local now = now_ms()

local due = redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now, 'LIMIT', 0, promote_limit)
for _, id in ipairs(due) do
  local job = job_key .. id
  local band = redis.call('HGET', job, 'band')
  redis.call('ZREM', delayed_key, id)
  if band then
    local seq = redis.call('HINCRBY', meta_key, 'seq', 1)
    redis.call('ZADD', waiting_key, int(tonumber(band) + seq), id)
    redis.call('HSET', job, 'state', 'waiting')
    emit(events_key, events_maxlen, 'waiting', id)
  end
end

local function next_delayed()
  local first = redis.call('ZRANGE', delayed_key, 0, 0, 'WITHSCORES')
  if #first == 0 then return -1 end
  return math.max(0, tonumber(first[2]) - now)
end

local limits = redis.call('HMGET', meta_key, 'paused', 'concurrency_max', 'rate_max',
  'rate_period_ms', 'throttled_until')
if limits[1] == '1' then
  return {'paused', now, next_delayed()}
end
local throttled_until = tonumber(limits[5] or 0)
if throttled_until > now then
  return {'limited', now, throttled_until - now}
end
if limits[2] then
  local free = tonumber(limits[2]) - redis.call('ZCARD', active_key)
  if free <= 0 then return {'limited', now, -1} end
  count = math.min(count, free)
end
local rate_period = tonumber(limits[4] or 0)
if limits[3] then
  redis.call('ZREMRANGEBYSCORE', rate_key, '-inf', now - rate_period)
  local left = tonumber(limits[3]) - redis.call('ZCARD', rate_key)
  if left <= 0 then
    local oldest = redis.call('ZRANGE', rate_key, 0, 0, 'WITHSCORES')
    return {'limited', now, math.max(1, tonumber(oldest[2]) + rate_period - now)}
  end
  count = math.min(count, left)
end

local out = {'ok', now, 0}
local popped = redis.call('ZPOPMIN', waiting_key, count)
local taken = 0
for i = 1, #popped, 2 do
  local id = popped[i]
  local job = job_key .. id
  if redis.call('EXISTS', job) == 1 then
    taken = taken + 1
    redis.call('HINCRBY', job, 'attempt', 1)
    claim(job, id, token_base .. '.' .. taken, worker_id, now, lock_ttl_ms, active_key, out)
    if limits[3] then
      redis.call('ZADD', rate_key, now, token_base .. '.' .. taken)
      redis.call('PEXPIRE', rate_key, rate_period)
    end
    emit(events_key, events_maxlen, 'active', id, 'worker', worker_id)
  end
end
if redis.call('ZCARD', waiting_key) > 0 then
  wake(marker_key)
end
if taken == 0 then out[3] = next_delayed() end
return out
