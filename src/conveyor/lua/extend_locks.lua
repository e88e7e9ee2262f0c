--[[
extend_locks: renew the locks of a worker's active jobs in one call, record the worker's
heartbeat (and, in handlers, that the job names it has handlers for are known by a live
worker until the heartbeat expires), and forget workers whose heartbeat expired.
KEYS: active workers worker_info handlers job
ARGV: #lock_ttl_ms worker_id #heartbeat_ttl_ms info ...jobs*2
  info: the worker's JSON self-description (stored in worker_info), with its job names
  under "handlers";
  jobs: 2 values per job: id token
RETURNS: {ids whose lock the worker no longer holds, ids whose cancellation was requested,
  ids of those no longer held whose record is gone (the server lost its data)}
]]
-- @include time
local now = now_ms()
redis.call('ZADD', workers_key, int(now + heartbeat_ttl_ms), worker_id)
redis.call('HSET', worker_info_key, worker_id, info)
local names = cjson.decode(info)['handlers']
if type(names) == 'table' then
  local until_ms = int(now + heartbeat_ttl_ms)
  for _, name in ipairs(names) do redis.call('HSET', handlers_key, name, until_ms) end
end
local gone = redis.call('ZRANGEBYSCORE', workers_key, '-inf', now, 'LIMIT', 0, 100)
if #gone > 0 then
  redis.call('ZREM', workers_key, unpack(gone))
  redis.call('HDEL', worker_info_key, unpack(gone))
end
local lost = {}
local cancel = {}
local missing = {}
for i = jobs_start, #ARGV, 2 do
  local id = ARGV[i]
  local held = redis.call('HMGET', job_key .. id, 'token', 'cancel_requested')
  if held[1] == ARGV[i + 1] and redis.call('ZSCORE', active_key, id) then
    redis.call('ZADD', active_key, 'XX', int(now + lock_ttl_ms), id)
    if held[2] then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
    if redis.call('EXISTS', job_key .. id) == 0 then missing[#missing + 1] = id end
  end
end
return {lost, cancel, missing}
