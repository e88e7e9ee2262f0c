--[[
replay_dead: move dead jobs back to waiting with a fresh attempt budget, keeping their id
and history. A job that is no longer dead (already replayed) is left alone, so replaying
twice makes one job.
KEYS: meta waiting dead events marker groups group_waiting job
ARGV: #events_maxlen ...jobs
  jobs: 2 values per job: id payload ('' keeps the stored payload)
RETURNS: the ids that were replayed
]]
-- @include time
-- @include events
-- @include waiting
local replayed = {}
for i = jobs_start, #ARGV, 2 do
  local id = ARGV[i]
  local job = job_key .. id
  if redis.call('HGET', job, 'state') == 'dead' then
    redis.call('ZREM', dead_key, id)
    if ARGV[i + 1] ~= '' then redis.call('HSET', job, 'payload', ARGV[i + 1]) end
    redis.call('HSET', job, 'state', 'waiting', 'attempt', 0, 'stalls', 0)
    redis.call('HDEL', job, 'reason', 'finished_ms', 'token')
    redis.call('HINCRBY', job, 'replays', 1)
    to_waiting(id, tonumber(redis.call('HGET', job, 'band')) + redis.call('HINCRBY', meta_key, 'seq', 1))
    emit(events_key, events_maxlen, 'replayed', id)
    replayed[#replayed + 1] = id
  end
end
if #replayed > 0 then wake(marker_key) end
return replayed
