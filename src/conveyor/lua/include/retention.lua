-- Delete the jobs of a finished set (completed or dead) that are past their expiry
-- (the score), then the oldest beyond keep_count. Bounded per call so it never stalls.
-- Uses the bound key job (a prefix).
-- @include delete_jobs
local function trim_finished(set_key, now, keep_count)
  delete_jobs(set_key, redis.call('ZRANGEBYSCORE', set_key, '-inf', now, 'LIMIT', 0, 1000))
  local excess = redis.call('ZCARD', set_key) - keep_count
  if excess > 0 then
    delete_jobs(set_key, redis.call('ZRANGE', set_key, 0, math.min(excess, 1000) - 1))
  end
end
