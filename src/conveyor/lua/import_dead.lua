--[[
import_dead: put exported dead jobs back into the dead-letter set. A job whose id exists
already is skipped, so importing the same file twice is harmless.
KEYS: dead events job
ARGV: #events_maxlen #dead_keep_age_ms id #died_ms ...fields
  fields: the job's hash as field/value pairs
RETURNS: 1 if imported, 0 if the id existed
]]
-- @include time
-- @include events
local job = job_key .. id
if redis.call('EXISTS', job) == 1 then return 0 end
for i = fields_start, #ARGV, 2 do
  redis.call('HSET', job, ARGV[i], ARGV[i + 1])
end
redis.call('HSET', job, 'state', 'dead')
redis.call('ZADD', dead_key, int(died_ms + dead_keep_age_ms), id)
emit(events_key, events_maxlen, 'imported', id)
return 1
