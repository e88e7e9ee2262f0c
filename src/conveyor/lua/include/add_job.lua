-- Create one job from 15 values of ARGV starting at base (see enqueue.lua), unless its id
-- exists or its deduplication key points at a live job. Appends created (1/0), the
-- job's state and its id (the existing job's id on a deduplication hit) to out.
-- @include waiting
local ADD_JOB_VALUES = 15

-- Put a stored job in delayed (due later) or at the back of its priority in waiting.
local function place(id, band, due, now)
  if due > now then
    redis.call('ZADD', delayed_key, int(due), id)
    return 'delayed'
  end
  to_waiting(id, band + redis.call('HINCRBY', meta_key, 'seq', 1))
  return 'waiting'
end

local function add_job(base, now, events_maxlen, out)
  local job_prefix, dedup_prefix = job_key, dedup_key
  local id = ARGV[base]
  local band = tonumber(ARGV[base + 3])
  local delay_ms = tonumber(ARGV[base + 5])
  local run_at_ms = tonumber(ARGV[base + 6])
  local due = now + delay_ms
  if run_at_ms > 0 then due = run_at_ms end
  local dedup_key, dedup_ms, dedup_mode = ARGV[base + 11], ARGV[base + 12], ARGV[base + 13]
  local dedup = dedup_key ~= '' and dedup_prefix .. dedup_key or nil
  if dedup then
    local holder = redis.call('GET', dedup)
    local state = holder and redis.call('HGET', job_prefix .. holder, 'state')
    if state and dedup_mode == 'throttle' then
      out[#out + 1], out[#out + 2], out[#out + 3] = 0, state, holder
      return false
    end
    if state and (state == 'waiting' or state == 'delayed') then  -- debounce
      local job = job_prefix .. holder
      from_waiting(holder)
      redis.call('ZREM', delayed_key, holder)
      state = place(holder, tonumber(redis.call('HGET', job, 'band')), due, now)
      redis.call('HSET', job, 'payload', ARGV[base + 2], 'state', state, 'due_ms', due)
      redis.call('PEXPIRE', dedup, dedup_ms)
      emit(events_key, events_maxlen, 'debounced', holder, 'state', state)
      out[#out + 1], out[#out + 2], out[#out + 3] = 0, state, holder
      return true
    end
  end
  local job = job_prefix .. id
  local existing = redis.call('HGET', job, 'state')
  if existing then
    out[#out + 1], out[#out + 2], out[#out + 3] = 0, existing, id
    return false
  end
  redis.call('HSET', job, 'id', id, 'name', ARGV[base + 1], 'payload', ARGV[base + 2],
    'band', ARGV[base + 3], 'priority', ARGV[base + 4], 'created_ms', now,
    'due_ms', due, 'attempt', 0, 'max_attempts', ARGV[base + 7], 'timeout_ms', ARGV[base + 8],
    'options', ARGV[base + 10], 'stalls', 0)
  if ARGV[base + 9] ~= '' then redis.call('HSET', job, 'keep_ms', ARGV[base + 9]) end
  if ARGV[base + 14] ~= '' then redis.call('HSET', job, 'group', ARGV[base + 14]) end
  local state = place(id, band, due, now)
  redis.call('HSET', job, 'state', state)
  if dedup then redis.call('SET', dedup, id, 'PX', dedup_ms) end
  emit(events_key, events_maxlen, 'added', id, 'name', ARGV[base + 1], 'state', state)
  if state == 'delayed' then emit(events_key, events_maxlen, 'delayed', id) end
  out[#out + 1], out[#out + 2], out[#out + 3] = 1, state, id
  return true
end
