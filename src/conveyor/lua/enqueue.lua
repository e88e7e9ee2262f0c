--[[
enqueue: add jobs to the queue; an id that already exists keeps its job unchanged.
KEYS: meta waiting delayed events marker dedup groups group_waiting job
ARGV: #events_maxlen ...batches
  batches: MessagePack arrays of jobs, each job an array of up to 15 values: id name
        payload band priority delay_ms run_at_ms max_attempts timeout_ms keep_ms options
        dedup_key dedup_ms dedup_mode group (absent trailing values, like '', mean none).
        keep_ms ('' for the queue's) is how long the job is kept once completed; band is
        the score base of the job's priority (see ops.py); the job is due at run_at_ms when
        that is > 0, else at server time + delay_ms. With a dedup_key, a live job holding
        that key (for dedup_ms) is returned instead ('throttle'), or gets this payload and
        due time ('debounce'). A job with a group waits in its group's set (fair fetch,
        group limits).
RETURNS: {codes, fresh, state, id, state, id, ...}: codes has one letter per job, 'w' or 'd'
  for a job created waiting or delayed, '-' for a job not created, whose state and id (the
  existing job's, or the deduplication holder's) follow in order. fresh is 1 when the queue
  has no 'registered' mark in its meta hash (new, or obliterated since): the caller then
  registers the queue again (the registry and the partition count are global keys, out of
  a script's reach) and only then sets the mark, so a caller that fails half-way leaves
  the next enqueue to try again.
]]
-- @include time
-- @include events
-- @include add_job
local now = now_ms()
local woke = false
local codes, out = {}, {'', 1 - redis.call('HEXISTS', meta_key, 'registered')}
pending_waiting = {}
events_trim_every = 100  -- a batch trims its events every 100 appends
for b = batches_start, #ARGV do
  local jobs = cmsgpack.unpack(ARGV[b])
  seq_block = #jobs
  for i = 1, #jobs do
    local created, state, id, changed = add_job(jobs[i], now, events_maxlen)
    if created then
      codes[#codes + 1] = state == 'waiting' and 'w' or 'd'
    else
      codes[#codes + 1] = '-'
      out[#out + 1], out[#out + 2] = state, id
    end
    woke = woke or changed
  end
end
flush_waiting()
if woke then wake(marker_key) end
out[1] = table.concat(codes)
return out
