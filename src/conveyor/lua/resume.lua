--[[
resume: let workers start jobs of a paused queue again, and wake them.
KEYS: meta events marker
ARGV: #events_maxlen
RETURNS: 1
]]
-- @include events
redis.call('HDEL', meta_key, 'paused')
emit(events_key, events_maxlen, 'resumed', '')
wake(marker_key)
return 1
