--[[
fire_schedule: make the job of one schedule tick and move the schedule to its next tick,
only if the schedule is still due at expected_ms: of several workers racing for a tick,
one fires it. The job's id is derived from the schedule and the tick, so even a replayed
call cannot make a second job for the same tick.
KEYS: meta waiting delayed events marker dedup schedule_due groups group_waiting job
ARGV: #events_maxlen schedule_id #expected_ms #next_ms #fire ...job
  job: the 15 enqueue values of the tick's job (see enqueue.lua), used when fire is 1
  (0 skips a missed tick). next_ms -1 removes the schedule from the due set.
RETURNS: {1, created (1/0), job state, job id} when this call advanced the schedule,
  {0} when another worker already did (or the schedule changed)
]]
-- @include time
-- @include events
-- @include add_job
local due = redis.call('ZSCORE', schedule_due_key, schedule_id)
if not due or math.floor(tonumber(due)) ~= expected_ms then return {0} end
if next_ms < 0 then
  redis.call('ZREM', schedule_due_key, schedule_id)
else
  redis.call('ZADD', schedule_due_key, int(next_ms), schedule_id)
end
if fire == 0 then return {1} end
local created, state, id, changed = add_job({unpack(ARGV, job_start, job_start + 14)}, now_ms(),
  events_maxlen)
if changed then wake(marker_key) end
return {1, created and 1 or 0, state, id}
