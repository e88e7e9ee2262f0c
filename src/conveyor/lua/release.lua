--[[
release: hand jobs back to the front of their priority in waiting without spending an
attempt (a worker shutting down, or giving back work it cannot start).
KEYS: meta waiting active events marker groups group_waiting group_active job
ARGV: #events_maxlen ...jobs
  jobs: 2 values per job: id token
RETURNS: the number of jobs handed back
]]
-- @include time
-- @include events
-- @include waiting
-- @include group_slots
local released = 0
for i = jobs_start, #ARGV, 2 do
  local id = ARGV[i]
  local job = job_key .. id
  if redis.call('HGET', job, 'token') == ARGV[i + 1] and redis.call('ZSCORE', active_key, id) then
    redis.call('ZREM', active_key, id)
    redis.call('HDEL', job, 'token')
    group_done(id)
    redis.call('HINCRBY', job, 'attempt', -1)
    redis.call('HSET', job, 'state', 'waiting')
    local head = redis.call('HINCRBY', meta_key, 'head', 1)
    to_waiting(id, tonumber(redis.call('HGET', job, 'band')) - head)
    emit(events_key, events_maxlen, 'waiting', id, 'released', '1')
    released = released + 1
  end
end
if released > 0 then wake(marker_key) end
return released
