--[[
counts: the number of jobs in each state, whether the queue is paused, and live workers.
KEYS: meta waiting delayed active completed dead workers cancelled
ARGV:
RETURNS: {waiting, delayed, active, completed, dead, paused (0/1), workers, cancelled}
]]
-- @include time
local now = now_ms()
return {
  redis.call('ZCARD', waiting_key) + tonumber(redis.call('HGET', meta_key, 'grouped') or 0),
  redis.call('ZCARD', delayed_key),
  redis.call('ZCARD', active_key),
  redis.call('ZCOUNT', completed_key, now, '+inf'),
  redis.call('ZCOUNT', dead_key, now, '+inf'),
  redis.call('HGET', meta_key, 'paused') == '1' and 1 or 0,
  redis.call('ZCOUNT', workers_key, now, '+inf'),
  redis.call('ZCOUNT', cancelled_key, now, '+inf'),
}
