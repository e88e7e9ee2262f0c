--[[
enqueue: add jobs to the queue; an id that already exists keeps its job unchanged.
KEYS: meta waiting delayed events marker dedup groups group_waiting job
ARGV: #events_maxlen #count ...jobs
  jobs: 15 values per job: id name payload band priority delay_ms run_at_ms max_attempts
        timeout_ms keep_ms options dedup_key dedup_ms dedup_mode group. keep_ms ('' for the
        queue's) is how long the job is kept once completed; band is the score base of the
        job's priority (see ops.py); the job is due at run_at_ms when that is > 0, else at
        server time + delay_ms. With a dedup_key, a live job holding that key (for dedup_ms)
        is returned instead ('throttle'), or gets this payload and due time ('debounce').
        A job with a group ('' for none) waits in its group's set (fair fetch, group limits).
RETURNS: flat list, per job: 1 if created else 0, the job's state, the job's id
]]
-- @include time
-- @include events
-- @include add_job
local now = now_ms()
local out = {}
local woke = false
for i = 0, count - 1 do
  local changed = add_job(jobs_start + i * ADD_JOB_VALUES, now, events_maxlen, out)
  woke = woke or changed
end
if woke then wake(marker_key) end
return out
