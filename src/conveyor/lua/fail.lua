--[[
fail: record a failed attempt of a job the worker holds, then retry it (waiting, or
delayed by delay_ms) or move it to the dead-letter set with a reason.
KEYS: meta waiting delayed active dead events marker dead_outbox metrics groups group_waiting group_active job
ARGV: #events_maxlen #dead_keep_count #dead_keep_age_ms id token decision #delay_ms #front reason attempt_record last_error #route #metrics_ttl_ms
  decision: 'retry' or 'dead'; front: 1 to retry (with no delay) at the front of the job's
  priority, as a hand-back does (a first stall); attempt_record: one JSON line appended to the job's history;
  last_error: JSON of the last error; route: 1 to list the job in dead_outbox when it dies
  (the queue names a dead-letter queue that the worker copies it to). The failed attempt
  (and a death) is counted in the per-minute metrics.
RETURNS: the job's new state, or false when the worker no longer holds its lock ('missing'
  when the job's record is gone: the server lost its data)
]]
-- @include time
-- @include events
-- @include retention
-- @include metrics
-- @include waiting
-- @include let_go
-- @include fields
local now = now_ms()
local job = job_key .. id
if not let_go(id, token) then
  return redis.call('EXISTS', job) == 0 and 'missing' or false
end
local history = redis.call('HGET', job, 'history') or ''
redis.call('HSET', job, 'history', history .. attempt_record .. '\n', 'error', last_error,
  'failed_ms', now)
redis.call('HSETNX', job, 'first_failed_ms', now)
emit(events_key, events_maxlen, 'failed', id, 'attempt', redis.call('HGET', job, 'attempt'))
count_metrics(meta_key, metrics_key, now, metrics_ttl_ms, 'failed', 1, {})

if decision == 'retry' then
  local state = 'waiting'
  if delay_ms > 0 then
    state = 'delayed'
    redis.call('ZADD', delayed_key, int(now + delay_ms), id)
    redis.call('HSET', job, 'due_ms', now + delay_ms)
  elseif front == 1 then
    to_front(id)
  else
    local band = whole(redis.call('HGET', job, 'band')) or 0
    to_waiting(id, band + redis.call('HINCRBY', meta_key, 'seq', 1))
  end
  redis.call('HSET', job, 'state', state)
  emit(events_key, events_maxlen, 'retrying', id, 'state', state, 'delay_ms', delay_ms)
  if state == 'delayed' then emit(events_key, events_maxlen, 'delayed', id) end
  wake(marker_key)
  return state
end

redis.call('HSET', job, 'state', 'dead', 'reason', reason, 'finished_ms', now)
redis.call('ZADD', dead_key, int(now + dead_keep_age_ms), id)
emit(events_key, events_maxlen, 'dead', id, 'reason', reason)
count_metrics(meta_key, metrics_key, now, metrics_ttl_ms, 'dead', 1, {})
if redis.call('HEXISTS', meta_key, 'concurrency_max') == 1 then wake(marker_key) end
if route == 1 then redis.call('RPUSH', dead_outbox_key, id) end
trim_finished(dead_key, now, dead_keep_count)
return 'dead'
