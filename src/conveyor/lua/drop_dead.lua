--[[
drop_dead: delete dead jobs for good. Ids that are not dead are left alone.
KEYS: dead events job
ARGV: #events_maxlen ...ids
RETURNS: the number of jobs deleted
]]
-- @include events
local dropped = 0
for i = ids_start, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', job_key .. id, 'state') == 'dead' then
    redis.call('ZREM', dead_key, id)
    redis.call('DEL', job_key .. id)
    emit(events_key, events_maxlen, 'dropped', id)
    dropped = dropped + 1
  end
end
return dropped
