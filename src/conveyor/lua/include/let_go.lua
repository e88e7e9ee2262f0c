-- Take the job `id` out of active if this worker still holds its lock (`token`): drop the
-- token and free its group's slot. Returns false, changing nothing, when the lock was lost
-- (another worker may hold the job now). Uses the bound keys job and active.
-- @include group_slots
local function let_go(id, token)
  local job = job_key .. id
  if redis.call('HGET', job, 'token') ~= token or redis.call('ZREM', active_key, id) == 0 then
    return false
  end
  redis.call('HDEL', job, 'token')
  group_done(id)
  return true
end
