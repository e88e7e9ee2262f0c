-- A job of `group` (false: none) stopped being active: free its group's concurrency slot,
-- and wake a worker that the group's limit held back. Uses the bound keys group_active,
-- meta, marker.
local function group_release(group)
  if not group then return end
  if redis.call('HINCRBY', group_active_key, group, -1) <= 0 then
    redis.call('HDEL', group_active_key, group)
  end
  if redis.call('HEXISTS', meta_key, 'group_concurrency') == 1 then wake(marker_key) end
end
