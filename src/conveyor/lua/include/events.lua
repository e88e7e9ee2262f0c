-- A script that appends many events may raise events_trim_every: then the first append and
-- every so many after it trim the stream (MAXLEN ~), which keeps it as bounded, give or
-- take that many events.
local events_trim_every, events_emitted = 1, 0

-- Append one event to the queue's capped stream (inside the transition that caused it).
local function emit(events_key, maxlen, event, job_id, ...)
  events_emitted = events_emitted + 1
  if (events_emitted - 1) % events_trim_every == 0 then
    redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'event', event, 'job', job_id, ...)
  else
    redis.call('XADD', events_key, '*', 'event', event, 'job', job_id, ...)
  end
end

-- Leave one marker for blocked workers: there may be work to fetch.
local function wake(marker_key)
  if redis.call('LLEN', marker_key) == 0 then
    redis.call('RPUSH', marker_key, '1')
  end
end
