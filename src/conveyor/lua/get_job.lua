--[[
get_job: read one job, unless it is finished and past its retention. A finished job's score
in its set (completed, dead or cancelled) is when it expires; one whose expiry is behind the
server's clock is gone for readers at once, as for counts, even before a later transition
trims it. Reads only.
KEYS: completed dead cancelled job
ARGV: id
RETURNS: the job's hash as field/value pairs; empty if there is no such job or it expired
]]
-- @include time
local job = job_key .. id
local fields = redis.call('HGETALL', job)
local finished = {completed = completed_key, dead = dead_key, cancelled = cancelled_key}
for i = 1, #fields, 2 do
  if fields[i] == 'state' then
    local set = finished[fields[i + 1]]
    local expiry = set and redis.call('ZSCORE', set, id)
    if expiry and tonumber(expiry) < now_ms() then return {} end
    break
  end
end
return fields
