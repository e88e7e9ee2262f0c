-- Take the job `id` out of active if this worker still holds its lock (`token`): drop the
-- token and free its group's slot. Returns false, changing nothing, when the lock was lost
-- (another worker may hold the job now); else true and the job's `field`, when one is asked
-- for (read in the same call). Uses the bound keys job and active.
-- @include group_slots
local function let_go(id, token, field)
  local job = job_key .. id
  local held = redis.call('HMGET', job, 'token', 'group', field or 'group')
  if held[1] ~= token or redis.call('ZREM', active_key, id) == 0 then
    return false
  end
  redis.call('HDEL', job, 'token')
  group_release(held[2])
  return true, held[3]
end
