--[[
enqueue: add jobs to the queue; an id that already exists keeps its job unchanged.
KEYS: meta waiting delayed events marker job
ARGV: #events_maxlen #count ...jobs
  jobs: 11 values per job: id name payload band priority delay_ms run_at_ms max_attempts
        timeout_ms keep_ms options. keep_ms ('' for the queue's) is how long the job is
        kept once completed. band is the score base of the job's priority (see ops.py);
        the job is due at run_at_ms when that is > 0, else at server time + delay_ms.
RETURNS: flat list, per job: 1 if created or 0 if it existed, then its state
]]
-- @include time
-- @include events
local now = now_ms()
local out = {}
local woke = false
for i = 0, count - 1 do
  local base = jobs_start + i * 11
  local id = ARGV[base]
  local job_key = job_key .. id
  local state = redis.call('HGET', job_key, 'state')
  if state then
    out[#out + 1] = 0
    out[#out + 1] = state
  else
    local band = tonumber(ARGV[base + 3])
    local delay_ms = tonumber(ARGV[base + 5])
    local run_at_ms = tonumber(ARGV[base + 6])
    local due = now + delay_ms
    if run_at_ms > 0 then due = run_at_ms end
    state = 'waiting'
    if due > now then state = 'delayed' end
    redis.call('HSET', job_key, 'id', id, 'name', ARGV[base + 1], 'payload', ARGV[base + 2],
      'band', ARGV[base + 3], 'priority', ARGV[base + 4], 'state', state, 'created_ms', now,
      'due_ms', due, 'attempt', 0, 'max_attempts', ARGV[base + 7], 'timeout_ms', ARGV[base + 8],
      'options', ARGV[base + 10], 'stalls', 0)
    if ARGV[base + 9] ~= '' then redis.call('HSET', job_key, 'keep_ms', ARGV[base + 9]) end
    if state == 'delayed' then
      redis.call('ZADD', delayed_key, int(due), id)
    else
      local seq = redis.call('HINCRBY', meta_key, 'seq', 1)
      redis.call('ZADD', waiting_key, int(band + seq), id)
    end
    emit(events_key, events_maxlen, 'added', id, 'name', ARGV[base + 1], 'state', state)
    if state == 'delayed' then emit(events_key, events_maxlen, 'delayed', id) end
    woke = true
    out[#out + 1] = 1
    out[#out + 1] = state
  end
end
if woke then wake(marker_key) end
return out
