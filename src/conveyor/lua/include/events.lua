-- Append one event to the queue's capped stream (inside the transition that caused it).
local function emit(events_key, maxlen, event, job_id, ...)
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'event', event, 'job', job_id, ...)
end

-- Leave one marker for blocked workers: there may be work to fetch.
local function wake(marker_key)
  if redis.call('LLEN', marker_key) == 0 then
    redis.call('RPUSH', marker_key, '1')
  end
end
