-- Waiting jobs live in the queue's waiting set, or, when they carry a group key, in their
-- group's own set, with the group in a ring that fetch serves one job per group in turn
-- (so one busy group cannot starve the others). Uses the bound keys meta, waiting, groups,
-- group_waiting (a prefix) and job (a prefix). A caller that knows the job's group passes
-- it (false: none) to spare reading it back.
-- @include fields
local function to_waiting(id, score, group)
  if group == nil then group = redis.call('HGET', job_key .. id, 'group') end
  if not group then
    redis.call('ZADD', waiting_key, int(score), id)
    return
  end
  redis.call('ZADD', group_waiting_key .. group, int(score), id)
  redis.call('HINCRBY', meta_key, 'grouped', 1)
  if not redis.call('ZSCORE', groups_key, group) then
    redis.call('ZADD', groups_key, redis.call('HINCRBY', meta_key, 'ring', 1), group)
  end
end

-- Put a job in waiting at the front of its priority, ahead of every job enqueued with it: its
-- band minus the queue's head counter, below the band's first sequence number (2**40, see
-- conveyor.ops.priority_band). The latest job put at the front goes first.
local function to_front(id)
  local band = whole(redis.call('HGET', job_key .. id, 'band')) or 0  -- malformed: see fields
  to_waiting(id, band - redis.call('HINCRBY', meta_key, 'head', 1))
end

-- Take a job out of waiting wherever it is; true if it was there.
local function from_waiting(id)
  local group = redis.call('HGET', job_key .. id, 'group')
  if not group then return redis.call('ZREM', waiting_key, id) == 1 end
  local set = group_waiting_key .. group
  if redis.call('ZREM', set, id) == 0 then return false end
  redis.call('HINCRBY', meta_key, 'grouped', -1)
  if redis.call('ZCARD', set) == 0 then redis.call('ZREM', groups_key, group) end
  return true
end

-- The set a waiting job is in, and its score there.
local function waiting_place(id)
  local group = redis.call('HGET', job_key .. id, 'group')
  local set = group and (group_waiting_key .. group) or waiting_key
  return set, redis.call('ZSCORE', set, id)
end
