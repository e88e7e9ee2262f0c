--[[
list_jobs: one page of the jobs in a state, each as its full hash (flattened pairs).
Pending states list in the order their jobs will run or expire; finished states list newest
first (see conveyor.states), without the jobs past their retention (their expiry score is
behind the server's clock; counts leaves them out too), even before a later transition
trims them.
KEYS: @states job
ARGV: state #offset #limit
RETURNS: {hash pairs of job 1, hash pairs of job 2, ...}
]]
-- @include time
local listed = job_state[state]
if not listed then return redis.error_reply('CONVEYOR_STATE unknown state ' .. state) end
local ids
if listed.terminal then
  ids = redis.call('ZRANGE', listed.key, '+inf', now_ms(), 'BYSCORE', 'REV', 'LIMIT', offset,
    limit)
elseif listed.newest_first then
  ids = redis.call('ZREVRANGE', listed.key, offset, offset + limit - 1)
else
  ids = redis.call('ZRANGE', listed.key, offset, offset + limit - 1)
end
local out = {}
for _, id in ipairs(ids) do
  local fields = redis.call('HGETALL', job_key .. id)
  if #fields > 0 then out[#out + 1] = fields end
end
return out
