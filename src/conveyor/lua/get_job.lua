--[[
get_job: read one job, unless it is finished and past its retention. A finished job's score
in its state's set is when it expires; one whose expiry is behind the server's clock is gone
for readers at once, as for counts, even before a later transition trims it. Reads only.
KEYS: @idle_states job
ARGV: id
RETURNS: the job's hash as field/value pairs; empty if there is no such job or it expired
]]
-- @include time
local job = job_key .. id
local fields = redis.call('HGETALL', job)
for i = 1, #fields, 2 do
  if fields[i] == 'state' then
    local listed = job_state[fields[i + 1]]
    local expiry = listed and listed.terminal and redis.call('ZSCORE', listed.key, id)
    if expiry and tonumber(expiry) < now_ms() then return {} end
    break
  end
end
return fields
