-- A script that appends many events sets this and calls trim_events once at its end.
local events_untrimmed = false

-- Append one event to the queue's capped stream (inside the transition that caused it).
local function emit(events_key, maxlen, event, job_id, ...)
  if events_untrimmed then
    redis.call('XADD', events_key, '*', 'event', event, 'job', job_id, ...)
  else
    redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'event', event, 'job', job_id, ...)
  end
end

local function trim_events(events_key, maxlen)
  redis.call('XTRIM', events_key, 'MAXLEN', '~', maxlen)
end

-- Leave one marker for blocked workers: there may be work to fetch.
local function wake(marker_key)
  if redis.call('LLEN', marker_key) == 0 then
    redis.call('RPUSH', marker_key, '1')
  end
end
