--[[
report: store progress and log lines that running handlers reported, for jobs the worker
still holds; progress changes are events.
KEYS: events job
ARGV: #events_maxlen #max_log_bytes ...reports*4
  reports: 4 values per job: id token progress (JSON, '' for none) logs ('' for none;
  lines ending in newlines). Logs keep their newest max_log_bytes, cut at a line start.
RETURNS: the ids that were refused because the worker no longer held their lock
]]
-- @include events
local refused = {}
for i = reports_start, #ARGV, 4 do
  local id = ARGV[i]
  local job = job_key .. id
  if redis.call('HGET', job, 'token') ~= ARGV[i + 1] then
    refused[#refused + 1] = id
  else
    local progress = ARGV[i + 2]
    if progress ~= '' then
      redis.call('HSET', job, 'progress', progress)
      emit(events_key, events_maxlen, 'progress', id, 'progress', progress)
    end
    local lines = ARGV[i + 3]
    if lines ~= '' then
      local logs = (redis.call('HGET', job, 'logs') or '') .. lines
      if #logs > max_log_bytes then
        local cut = #logs - max_log_bytes
        local next_line = string.find(logs, '\n', cut, true)
        logs = next_line and string.sub(logs, next_line + 1) or ''
      end
      redis.call('HSET', job, 'logs', logs)
    end
  end
end
return refused
