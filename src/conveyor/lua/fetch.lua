--[[
fetch: promote due delayed jobs, then give up to `count` waiting jobs to a worker,
highest priority first and FIFO within a priority, each with a lock until now + lock_ttl_ms.
KEYS: meta waiting delayed active events marker job
ARGV: #events_maxlen #count worker_id token_base #lock_ttl_ms #promote_limit
RETURNS: {status, now, ms_until_next_delayed_or_-1, claim fields of each job...}
  status is 'ok' or 'paused'; claim fields are CLAIM_FIELDS then the lock token, per job.
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

if redis.call('HGET', meta_key, 'paused') == '1' then
  return {'paused', now, next_delayed()}
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
    emit(events_key, events_maxlen, 'active', id, 'worker', worker_id)
  end
end
if redis.call('ZCARD', waiting_key) > 0 then
  wake(marker_key)
end
if taken == 0 then out[3] = next_delayed() end
return out
