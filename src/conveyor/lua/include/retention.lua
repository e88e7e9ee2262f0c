-- Delete the jobs of a finished set (completed or dead) that are past their expiry
-- (the score), then the oldest beyond keep_count. Bounded per call so it never stalls.
local function trim_finished(set_key, job_prefix, now, keep_count)
  local expired = redis.call('ZRANGEBYSCORE', set_key, '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(expired) do
    redis.call('DEL', job_prefix .. id)
  end
  if #expired > 0 then
    redis.call('ZREM', set_key, unpack(expired))
  end
  local excess = redis.call('ZCARD', set_key) - keep_count
  if excess > 0 then
    local oldest = redis.call('ZRANGE', set_key, 0, math.min(excess, 1000) - 1)
    for _, id in ipairs(oldest) do
      redis.call('DEL', job_prefix .. id)
    end
    redis.call('ZREM', set_key, unpack(oldest))
  end
end
