--[[
obliterate: delete a whole queue in bounded steps; call again until it returns 0.
Refuses while jobs are active unless forced (their workers then cannot settle them).
KEYS: meta @states events marker workers worker_info handlers schedules schedule_due rate dead_outbox groups group_waiting group_active group_rate job
ARGV: #force #batch
RETURNS: 1 while more remains, 0 when the queue is gone; error CONVEYOR_BUSY if active
]]
-- @include delete_jobs
local active = redis.call('ZCARD', active_key)
if active > 0 and force == 0 then
  return redis.error_reply('CONVEYOR_BUSY ' .. active .. ' jobs are active')
end
local removed = 0
for _, s in ipairs(job_states) do
  removed = removed + delete_jobs(s.key, redis.call('ZRANGE', s.key, 0, batch - removed - 1))
  if removed >= batch then return 1 end
end
local group = redis.call('ZRANGE', groups_key, 0, 0)[1]
if group then
  local set = group_waiting_key .. group
  delete_jobs(set, redis.call('ZRANGE', set, 0, batch - 1))
  if redis.call('ZCARD', set) == 0 then
    redis.call('DEL', group_rate_key .. group)
    redis.call('ZREM', groups_key, group)
  end
  return 1
end
for _, group in ipairs(redis.call('HKEYS', group_active_key)) do
  redis.call('DEL', group_rate_key .. group)
end
redis.call('DEL', group_active_key)
redis.call('DEL', meta_key, events_key, marker_key, workers_key, worker_info_key, handlers_key,
  schedules_key, schedule_due_key, rate_key, dead_outbox_key)
return 0
