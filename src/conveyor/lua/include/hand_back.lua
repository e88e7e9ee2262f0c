-- Give back a job this worker holds (token checked): to the front of its priority in
-- waiting, without spending an attempt. Returns true if it was handed back.
-- @include waiting
-- @include let_go
-- @include fields
local function hand_back(id, token)
  if not let_go(id, token) then return false end
  local job = job_key .. id
  if whole(redis.call('HGET', job, 'attempt')) then
    redis.call('HINCRBY', job, 'attempt', -1)
  end
  redis.call('HSET', job, 'state', 'waiting')
  to_front(id)
  emit(events_key, events_maxlen, 'waiting', id, 'released', '1')
  return true
end
