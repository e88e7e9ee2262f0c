--[[
release: hand jobs back to the front of their priority in waiting without spending an
attempt (a worker shutting down, or giving back work it cannot start).
KEYS: meta waiting active events marker groups group_waiting group_active job
ARGV: #events_maxlen ...jobs*2
  jobs: 2 values per job: id token
RETURNS: the number of jobs handed back
]]
-- @include time
-- @include events
-- @include hand_back
local released = 0
for i = jobs_start, #ARGV, 2 do
  if hand_back(ARGV[i], ARGV[i + 1]) then released = released + 1 end
end
if released > 0 then wake(marker_key) end
return released
