--[[
reprioritize: change the priority of a waiting or delayed job; a waiting job keeps its
place among the jobs of its new priority that were enqueued at the same time.
KEYS: meta waiting events groups group_waiting job
ARGV: #events_maxlen id #band #priority
RETURNS: 1; error CONVEYOR_STATE if the job is not waiting/delayed, 0 if no such job
]]
-- @include time
-- @include events
-- @include queued
-- @include waiting
-- @include fields
local job = job_key .. id
local state, refused = queued_state(id)
if refused then return refused end
if not state then return 0 end
-- A malformed stored band is mended: the job keeps its place under its new priority.
local old_band = whole(redis.call('HGET', job, 'band')) or band
if state == 'waiting' then
  local set, score = waiting_place(id)
  redis.call('ZADD', set, int(band + tonumber(score) - old_band), id)
end
redis.call('HSET', job, 'band', int(band), 'priority', priority)
emit(events_key, events_maxlen, 'reprioritized', id, 'priority', priority)
return 1
