--[[
import_dead: put one batch of exported dead jobs back into the dead-letter set, in one
atomic step (the caller has checked every record). A job whose id exists already is
skipped, so importing the same file twice is harmless.
KEYS: dead events job
ARGV: #events_maxlen #dead_keep_age_ms ...jobs
  jobs: one MessagePack array per job: id died_ms field value field value ... (its hash)
RETURNS: the number of jobs imported
]]
-- @include time
-- @include events
local imported = 0
for j = jobs_start, #ARGV do
  local v = cmsgpack.unpack(ARGV[j])
  local id = v[1]
  local job = job_key .. id
  if redis.call('EXISTS', job) == 0 then
    redis.call('HSET', job, unpack(v, 3))
    redis.call('HSET', job, 'state', 'dead')
    redis.call('ZADD', dead_key, int(tonumber(v[2]) + dead_keep_age_ms), id)
    emit(events_key, events_maxlen, 'imported', id)
    imported = imported + 1
  end
end
return imported
