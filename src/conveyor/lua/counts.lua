--[[
counts: the number of jobs in each state, whether the queue is paused, and live workers.
KEYS: meta @states workers
ARGV:
RETURNS: {name, value, ...}: every state (see conveyor.states) with its number of jobs,
  then 'paused' (0/1) and 'workers'
]]
-- @include time
local now = now_ms()
local out = {}
for _, s in ipairs(job_states) do
  local count
  if s.terminal then  -- scored by expiry: count the jobs not yet expired
    count = redis.call('ZCOUNT', s.key, now, '+inf')
  else
    count = redis.call('ZCARD', s.key)
  end
  if s.name == 'waiting' then  -- waiting jobs of a group wait in their group's set
    count = count + tonumber(redis.call('HGET', meta_key, 'grouped') or 0)
  end
  out[#out + 1] = s.name
  out[#out + 1] = count
end
out[#out + 1] = 'paused'
out[#out + 1] = redis.call('HGET', meta_key, 'paused') == '1' and 1 or 0
out[#out + 1] = 'workers'
out[#out + 1] = redis.call('ZCOUNT', workers_key, now, '+inf')
return out
