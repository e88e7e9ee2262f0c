-- Whether a job in `state` is queued: waiting or delayed, not started yet, so an operator may
-- still change it (cancel, kill, reprioritize, reschedule).
local function queued(state)
  return state == 'waiting' or state == 'delayed'
end

-- The state of the job `id` when it is queued; nothing if there is no such job; else nil
-- and a CONVEYOR_STATE error reply to return. Uses the bound key job.
local function queued_state(id)
  local state = redis.call('HGET', job_key .. id, 'state')
  if not state then return nil end
  if not queued(state) then
    return nil, redis.error_reply('CONVEYOR_STATE job ' .. id .. ' is ' .. state)
  end
  return state
end
