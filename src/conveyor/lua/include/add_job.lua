-- Create one job from its 15 enqueue values (a table, see enqueue.lua), unless its id
-- exists or its deduplication key points at a live job. Returns whether it created the job,
-- the job's state, its id (the existing job's id on a deduplication hit) and whether
-- waiting or delayed work changed (so workers should be woken).
-- @include waiting
-- @include fields
-- @include queued

-- FIFO sequence numbers, taken from the meta hash's counter seq_block at a time (a batch
-- reserves its numbers with one call; numbers left unused are harmless gaps).
local seq_next, seq_last, seq_block = 1, 0, 1
local function take_seq()
  if seq_next > seq_last then
    seq_last = redis.call('HINCRBY', meta_key, 'seq', seq_block)
    seq_next = seq_last - seq_block + 1
  end
  seq_next = seq_next + 1
  return seq_next - 1
end

-- With a table here, new jobs without a group wait in it (as ZADD arguments) to enter the
-- waiting set in one call: flush_waiting runs before anything reads that set, and at the end.
local pending_waiting = nil
local function flush_waiting()
  if pending_waiting and #pending_waiting > 0 then
    redis.call('ZADD', waiting_key, unpack(pending_waiting))
    pending_waiting = {}
  end
end

-- Put a stored job in delayed (due later) or at the back of its priority in waiting.
-- group is the job's group (false: none; nil: read it from the job).
local function place(id, band, due, now, group)
  if due > now then
    redis.call('ZADD', delayed_key, int(due), id)
    return 'delayed'
  end
  if pending_waiting and group == false then
    local n = #pending_waiting
    pending_waiting[n + 1], pending_waiting[n + 2] = int(band + take_seq()), id
    if n >= 2000 then flush_waiting() end  -- unpack takes a few thousand values at most
  else
    to_waiting(id, band + take_seq(), group)
  end
  return 'waiting'
end

-- A value that may be absent: nil and '' both mean none.
local function given(value)
  if value == nil or value == '' then return nil end
  return value
end

local function add_job(v, now, events_maxlen)
  local job_prefix, dedup_prefix = job_key, dedup_key
  local id, name, payload = v[1], v[2], v[3]
  local band = tonumber(v[4])
  local due = now + (tonumber(v[6]) or 0)
  local run_at_ms = tonumber(v[7]) or 0
  if run_at_ms > 0 then due = run_at_ms end
  local dedup_key, dedup_ms, dedup_mode = given(v[12]), v[13], v[14]
  local dedup = dedup_key and dedup_prefix .. dedup_key or nil
  if dedup then
    flush_waiting()  -- a debounce moves its holder, which may be among the pending jobs
    local holder = redis.call('GET', dedup)
    local state = holder and redis.call('HGET', job_prefix .. holder, 'state')
    if state and dedup_mode == 'throttle' then
      return false, state, holder, false
    end
    if state and queued(state) then  -- debounce
      local job = job_prefix .. holder
      from_waiting(holder)
      redis.call('ZREM', delayed_key, holder)
      state = place(holder, whole(redis.call('HGET', job, 'band')) or 0, due, now)
      redis.call('HSET', job, 'payload', payload, 'state', state, 'due_ms', due)
      redis.call('PEXPIRE', dedup, dedup_ms)
      emit(events_key, events_maxlen, 'debounced', holder, 'state', state)
      return false, state, holder, true
    end
  end
  local job = job_prefix .. id
  local existing = redis.call('HGET', job, 'state')
  if existing then
    return false, existing, id, false
  end
  local state = due > now and 'delayed' or 'waiting'
  -- Fields at their default (attempt, stalls, no timeout, no options) are not stored:
  -- readers take a missing field as its default.
  local timeout_ms, keep_ms = tonumber(v[9]) or 0, given(v[10])
  local options, group = given(v[11]), given(v[15])
  if timeout_ms > 0 or keep_ms or options or group then
    local fields = {'id', id, 'name', name, 'payload', payload, 'band', int(band),
      'priority', v[5], 'created_ms', now, 'due_ms', due, 'max_attempts', v[8], 'state', state}
    if timeout_ms > 0 then fields[#fields + 1], fields[#fields + 2] = 'timeout_ms', timeout_ms end
    if keep_ms then fields[#fields + 1], fields[#fields + 2] = 'keep_ms', keep_ms end
    if options then fields[#fields + 1], fields[#fields + 2] = 'options', options end
    if group then fields[#fields + 1], fields[#fields + 2] = 'group', group end
    redis.call('HSET', job, unpack(fields))
  else
    redis.call('HSET', job, 'id', id, 'name', name, 'payload', payload, 'band', int(band),
      'priority', v[5], 'created_ms', now, 'due_ms', due, 'max_attempts', v[8], 'state', state)
  end
  place(id, band, due, now, group or false)
  if dedup then redis.call('SET', dedup, id, 'PX', dedup_ms) end
  emit(events_key, events_maxlen, 'added', id, 'name', name, 'state', state)
  if state == 'delayed' then emit(events_key, events_maxlen, 'delayed', id) end
  return true, state, id, true
end
