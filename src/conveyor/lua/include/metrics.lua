-- Per-minute counters (one hash per minute that expires after the metrics window) and
-- running totals in the queue's meta hash. Buckets of processing time are computed by the
-- caller (conveyor.metrics.duration_bucket), so the rule lives in one place.
local function count_metrics(meta_key, metrics_prefix, now, ttl_ms, kind, n, buckets)
  if n == 0 then return end
  local key = metrics_prefix .. math.floor(now / 60000)
  redis.call('HINCRBY', key, kind, n)
  for bucket, count in pairs(buckets) do
    redis.call('HINCRBY', key, 'b' .. bucket, count)
  end
  redis.call('PEXPIRE', key, ttl_ms)
  redis.call('HINCRBY', meta_key, kind .. '_total', n)
end
