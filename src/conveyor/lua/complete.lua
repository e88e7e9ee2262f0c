--[[
complete: acknowledge finished jobs; a job whose lock token no longer matches is refused.
KEYS: meta active completed events metrics marker group_active job
ARGV: #events_maxlen #keep_count #keep_age_ms #metrics_ttl_ms ...jobs*4
  jobs: 4 values per job: id token result (JSON) duration_bucket. A job's own options may
  say keep_ms. Completions are counted in the per-minute metrics.
RETURNS: {ids refused because the worker no longer held their lock, ids of those whose
  record is gone (the server lost its data)}
]]
-- @include time
-- @include events
-- @include retention
-- @include metrics
-- @include let_go
-- @include fields
local now = now_ms()
local refused = {}
local missing = {}
local done = 0
local buckets = {}
for i = jobs_start, #ARGV, 4 do
  local id = ARGV[i]
  local job = job_key .. id
  -- The token first: a job whose lock this worker lost must not leave active here.
  local held, keep_ms = let_go(id, ARGV[i + 1], 'keep_ms')
  if not held then
    refused[#refused + 1] = id
    if redis.call('EXISTS', job) == 0 then missing[#missing + 1] = id end
  else
    local keep = keep_ms and whole(keep_ms) or keep_age_ms
    if keep <= 0 then
      redis.call('DEL', job)
    else
      redis.call('HSET', job, 'state', 'completed', 'result', ARGV[i + 2], 'finished_ms', now)
      redis.call('ZADD', completed_key, int(now + keep), id)
    end
    emit(events_key, events_maxlen, 'completed', id)
    done = done + 1
    local bucket = ARGV[i + 3]
    buckets[bucket] = (buckets[bucket] or 0) + 1
  end
end
count_metrics(meta_key, metrics_key, now, metrics_ttl_ms, 'completed', done, buckets)
if done > 0 and redis.call('HEXISTS', meta_key, 'concurrency_max') == 1 then
  wake(marker_key)  -- a worker held back by the concurrency limit may start a job now
end
trim_finished(completed_key, now, keep_count)
return {refused, missing}
