--[[
list_jobs: one page of the jobs in a state, each as its full hash (flattened pairs).
waiting, delayed and active list in the order they will run or expire; completed, dead and
cancelled list newest first, without the jobs past their retention (their expiry score is
behind the server's clock; counts leaves them out too), even before a later transition
trims them.
KEYS: waiting delayed active completed dead cancelled job
ARGV: state #offset #limit
RETURNS: {hash pairs of job 1, hash pairs of job 2, ...}
]]
-- @include time
local sets = {waiting = waiting_key, delayed = delayed_key, active = active_key,
  completed = completed_key, dead = dead_key, cancelled = cancelled_key}
local set = sets[state]
if not set then return redis.error_reply('CONVEYOR_STATE unknown state ' .. state) end
local ids
if state == 'completed' or state == 'dead' or state == 'cancelled' then
  ids = redis.call('ZRANGE', set, '+inf', now_ms(), 'BYSCORE', 'REV', 'LIMIT', offset,
    limit)
else
  ids = redis.call('ZRANGE', set, offset, offset + limit - 1)
end
local out = {}
for _, id in ipairs(ids) do
  local fields = redis.call('HGETALL', job_key .. id)
  if #fields > 0 then out[#out + 1] = fields end
end
return out
