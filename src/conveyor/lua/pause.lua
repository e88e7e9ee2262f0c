--[[
pause: stop workers from starting new jobs of the queue; nothing is removed.
KEYS: meta events
ARGV: #events_maxlen
RETURNS: 1
]]
-- @include events
redis.call('HSET', meta_key, 'paused', '1')
emit(events_key, events_maxlen, 'paused', '')
return 1
