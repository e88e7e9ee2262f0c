--[[
recover_stalled: claim jobs whose lock expired (their worker died or hung) so the caller
can record the stalled attempt and retry or bury them by the usual rules.
KEYS: active events job
ARGV: #events_maxlen #limit worker_id token_base #lock_ttl_ms
RETURNS: {now, claim fields of each job...} (CLAIM_FIELDS then the new lock token;
  started_ms and worker are those of the attempt that stalled, stalls already counts it)
]]
-- @include time
-- @include events
-- @include claim
-- @include fields
local now = now_ms()
local out = {now}
local expired = redis.call('ZRANGEBYSCORE', active_key, '-inf', now, 'LIMIT', 0, limit)
for n, id in ipairs(expired) do
  local job = job_key .. id
  if redis.call('EXISTS', job) == 0 then
    redis.call('ZREM', active_key, id)
  else
    local stalls = redis.call('HGET', job, 'stalls')
    if not stalls or whole(stalls) then  -- else passed on as it is: the job is buried
      redis.call('HINCRBY', job, 'stalls', 1)
    end
    emit(events_key, events_maxlen, 'stalled', id, 'worker', redis.call('HGET', job, 'worker') or '')
    claim(job, id, token_base .. '.' .. n, worker_id, now, lock_ttl_ms, active_key, out, false)
  end
end
return out
