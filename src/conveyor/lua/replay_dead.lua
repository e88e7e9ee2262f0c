--[[
replay_dead: move dead jobs back to waiting with a fresh attempt budget, keeping their id
and history. A job that is no longer dead (already replayed) is left alone, so replaying
twice makes one job. Each job's fields are checked before its first write: a job a worker
could not run or that could not be placed (no name or payload; band, priority or
max_attempts missing or not an integer in range; timeout_ms, created_ms or started_ms not
a whole number; options not a JSON object) stays dead, and the reply says why.
KEYS: meta waiting dead events marker groups group_waiting job
ARGV: #events_maxlen #band_min #band_max #priority_min #priority_max #attempts_max ...jobs*2
  jobs: 2 values per job: id payload ('' keeps the stored payload)
RETURNS: {replayed ids, refused} where refused is id, why, id, why, ...
]]
-- @include time
-- @include events
-- @include waiting

-- Whether value is the decimal text of an integer within low..high.
local function integer_in(value, low, high)
  if not value or #value > 17 or not string.match(value, '^%-?%d+$') then return false end
  local n = tonumber(value)
  return n >= low and n <= high
end

local CHECKED = {'name', 'payload', 'band', 'priority', 'max_attempts', 'timeout_ms',
  'created_ms', 'started_ms', 'options'}

-- Why this job cannot go back to waiting, or nil if it can.
local function unfit(job, payload)
  local v = redis.call('HMGET', job, unpack(CHECKED))
  if not v[1] or v[1] == '' then return 'name is missing' end
  if not v[2] and payload == '' then return 'payload is missing' end
  local ranges = {[3] = {band_min, band_max}, [4] = {priority_min, priority_max},
    [5] = {1, attempts_max}}
  for i = 3, 8 do
    local range = ranges[i] or {0, 2 ^ 53}
    local optional = i >= 6
    if not (optional and v[i] == false) and not integer_in(v[i], range[1], range[2]) then
      local got = v[i] and ("'" .. string.sub(v[i], 1, 40) .. "'") or 'missing'
      return CHECKED[i] .. ' must be an integer in ' .. int(range[1]) .. '..' ..
        int(range[2]) .. ', not ' .. got
    end
  end
  if v[9] then
    local ok, options = pcall(cjson.decode, v[9])
    if not ok or type(options) ~= 'table' then return 'options must be a JSON object' end
  end
  return nil
end

local replayed, refused = {}, {}
for i = jobs_start, #ARGV, 2 do
  local id = ARGV[i]
  local job = job_key .. id
  if redis.call('HGET', job, 'state') == 'dead' then
    local why = unfit(job, ARGV[i + 1])
    if why then
      refused[#refused + 1], refused[#refused + 2] = id, why
    else
      redis.call('ZREM', dead_key, id)
      if ARGV[i + 1] ~= '' then redis.call('HSET', job, 'payload', ARGV[i + 1]) end
      redis.call('HSET', job, 'state', 'waiting', 'attempt', 0, 'stalls', 0)
      redis.call('HDEL', job, 'reason', 'finished_ms', 'token', 'unknown_since_ms')
      redis.call('HINCRBY', job, 'replays', 1)
      to_waiting(id, tonumber(redis.call('HGET', job, 'band')) + redis.call('HINCRBY', meta_key, 'seq', 1))
      emit(events_key, events_maxlen, 'replayed', id)
      replayed[#replayed + 1] = id
    end
  end
end
if #replayed > 0 then wake(marker_key) end
return {replayed, refused}
