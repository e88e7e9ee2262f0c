--[[
complete: acknowledge finished jobs; a job whose lock token no longer matches is refused.
KEYS: active completed events job
ARGV: #events_maxlen #keep_count #keep_age_ms ...jobs
  jobs: 3 values per job: id token result (JSON). A job's own options may say keep_ms.
RETURNS: the ids that were refused because the worker no longer held their lock
]]
-- @include time
-- @include events
-- @include retention
local now = now_ms()
local refused = {}
for i = jobs_start, #ARGV, 3 do
  local id = ARGV[i]
  local job = job_key .. id
  if redis.call('HGET', job, 'token') ~= ARGV[i + 1] or not redis.call('ZSCORE', active_key, id) then
    refused[#refused + 1] = id
  else
    redis.call('ZREM', active_key, id)
    redis.call('HDEL', job, 'token')
    local keep = tonumber(redis.call('HGET', job, 'keep_ms') or keep_age_ms)
    if keep <= 0 then
      redis.call('DEL', job)
    else
      redis.call('HSET', job, 'state', 'completed', 'result', ARGV[i + 2], 'finished_ms', now)
      redis.call('ZADD', completed_key, int(now + keep), id)
    end
    emit(events_key, events_maxlen, 'completed', id)
  end
end
trim_finished(completed_key, job_key, now, keep_count)
return refused
