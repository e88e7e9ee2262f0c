-- Give back a job this worker holds (token checked): to the front of its priority in
-- waiting, without spending an attempt. Returns true if it was handed back.
-- @include waiting
-- @include group_slots
local function hand_back(id, token)
  local job = job_key .. id
  if redis.call('HGET', job, 'token') ~= token or not redis.call('ZSCORE', active_key, id) then
    return false
  end
  redis.call('ZREM', active_key, id)
  redis.call('HDEL', job, 'token')
  group_done(id)
  redis.call('HINCRBY', job, 'attempt', -1)
  redis.call('HSET', job, 'state', 'waiting')
  local head = redis.call('HINCRBY', meta_key, 'head', 1)
  to_waiting(id, tonumber(redis.call('HGET', job, 'band')) - head)
  emit(events_key, events_maxlen, 'waiting', id, 'released', '1')
  return true
end
