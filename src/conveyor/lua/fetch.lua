--[[
fetch: promote due delayed jobs, then give up to `count` waiting jobs to a worker,
highest priority first and FIFO within a priority, each with a lock until now + lock_ttl_ms,
within the queue's limits (meta: concurrency_max, rate_max per rate_period_ms,
throttled_until). Jobs without a group come first; then grouped jobs, one per group in
turn round the ring of groups with work, within each group's limits (meta:
group_concurrency, group_rate_max per group_rate_period_ms).
Only jobs with one of the worker's job names are taken: a job of another name stays where
it is, for a worker that knows it (a rolling deploy), and is marked with when it was first
passed over (unknown_since_ms). It is taken, to be buried as unknown_job, once no live
worker has known its name (handlers: name -> heartbeat expiry) for unknown_grace_ms, and
that long after it was first passed over. At most scan_limit waiting jobs are looked at.
KEYS: meta waiting delayed active events marker rate groups group_waiting group_active group_rate handlers job
ARGV: #events_maxlen #count worker_id token_base #lock_ttl_ms #promote_limit #unknown_grace_ms #scan_limit ...names
  names: the job names the worker has handlers for
RETURNS: {status, now, ms_to_wait_or_-1, claim fields of each job...}
  status is 'ok', 'paused', 'limited' or 'passed' (nothing taken, but jobs of names the
  worker does not know were passed over); ms_to_wait is until the next delayed job (ok,
  paused, passed) or until a limit lets a job start (limited; -1: until a running job ends).
  Claim fields are CLAIM_FIELDS then the lock token, per job.
]]
-- @include time
-- @include events
-- @include claim
-- @include fields
-- @include waiting
local now = now_ms()

local due = redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now, 'LIMIT', 0, promote_limit)
for _, id in ipairs(due) do
  local job = job_key .. id
  local band = redis.call('HGET', job, 'band')
  redis.call('ZREM', delayed_key, id)
  if band then  -- a malformed band sorts as 0: the worker that takes the job buries it
    to_waiting(id, (whole(band) or 0) + redis.call('HINCRBY', meta_key, 'seq', 1))
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
  'rate_period_ms', 'throttled_until', 'group_concurrency', 'group_rate_max',
  'group_rate_period_ms')
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
local taken = 0
local passed = 0

local known = {}
for i = names_start, #ARGV do known[ARGV[i]] = true end

-- Whether this worker takes the job: it knows its name, or nobody has for the grace (then
-- it takes it to bury it). A job without a name (no record) is left to claim() to drop.
local function serves(id)
  local job = job_key .. id
  local fields = redis.call('HMGET', job, 'name', 'unknown_since_ms')
  local name = fields[1]
  if not name or known[name] then
    if fields[2] then redis.call('HDEL', job, 'unknown_since_ms') end
    return true
  end
  local since = tonumber(fields[2])
  if not since then
    since = now
    redis.call('HSET', job, 'unknown_since_ms', now)
  end
  local known_until = tonumber(redis.call('HGET', handlers_key, name)) or 0
  if now >= math.max(since, known_until) + unknown_grace_ms then
    redis.call('HDEL', job, 'unknown_since_ms')
    return true
  end
  passed = passed + 1
  return false
end

local function take(id)
  local token = token_base .. '.' .. (taken + 1)
  if not claim(job_key .. id, id, token, worker_id, now, lock_ttl_ms, active_key, out, true) then
    return false
  end
  taken = taken + 1
  if limits[3] then
    redis.call('ZADD', rate_key, now, token_base .. '.' .. taken)
    redis.call('PEXPIRE', rate_key, rate_period)
  end
  emit(events_key, events_maxlen, 'active', id, 'worker', worker_id)
  return true
end

-- Jobs passed over go back with their own scores, so they keep their places.
local left_over = {}
local scanned = 0
local budget = math.max(count, scan_limit)
while taken < count and scanned < budget do
  local popped = redis.call('ZPOPMIN', waiting_key, math.min(count - taken, budget - scanned))
  if #popped == 0 then break end
  for i = 1, #popped, 2 do
    scanned = scanned + 1
    if serves(popped[i]) then
      take(popped[i])
    else
      left_over[#left_over + 1] = popped[i + 1]
      left_over[#left_over + 1] = popped[i]
    end
  end
end
if #left_over > 0 then redis.call('ZADD', waiting_key, unpack(left_over)) end

-- Grouped jobs: round the ring, one job per group per pass, so a group with a long backlog
-- gets its turn like a group with one job. A group at its limit goes to the back too.
local group_limited = false
local group_concurrency = tonumber(limits[6] or 0)
local group_rate = tonumber(limits[7] or 0)
local group_period = tonumber(limits[8] or 0)
local function group_allows(group)
  if group_concurrency > 0
      and tonumber(redis.call('HGET', group_active_key, group) or 0) >= group_concurrency then
    return false
  end
  if group_rate > 0 then
    local starts = group_rate_key .. group
    redis.call('ZREMRANGEBYSCORE', starts, '-inf', now - group_period)
    if redis.call('ZCARD', starts) >= group_rate then return false end
  end
  return true
end
local moved = true
while taken < count and moved do
  moved = false
  local ring = redis.call('ZRANGE', groups_key, 0, 99)
  if #ring == 0 then break end
  for _, group in ipairs(ring) do
    if taken >= count then break end
    redis.call('ZADD', groups_key, redis.call('HINCRBY', meta_key, 'ring', 1), group)
    local set = group_waiting_key .. group
    if group_allows(group) then
      local next_job = redis.call('ZPOPMIN', set, 1)
      if #next_job > 0 and not serves(next_job[1]) then
        redis.call('ZADD', set, next_job[2], next_job[1])  -- its group waits its turn again
      elseif #next_job > 0 then
        redis.call('HINCRBY', meta_key, 'grouped', -1)
        if take(next_job[1]) then
          moved = true
          redis.call('HINCRBY', group_active_key, group, 1)
          if group_rate > 0 then
            redis.call('ZADD', group_rate_key .. group, now, token_base .. '.' .. taken)
            redis.call('PEXPIRE', group_rate_key .. group, group_period)
          end
        end
      end
      if redis.call('ZCARD', set) == 0 then redis.call('ZREM', groups_key, group) end
    else
      group_limited = true
    end
  end
end

if redis.call('ZCARD', waiting_key) > 0 or (redis.call('ZCARD', groups_key) > 0 and not group_limited) then
  wake(marker_key)
end
if taken == 0 then
  if group_limited then
    out[1] = 'limited'
    out[3] = -1
  else
    if passed > 0 then out[1] = 'passed' end
    out[3] = next_delayed()
  end
end
return out
