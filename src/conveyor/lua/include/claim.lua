-- The fields a worker needs to run or settle a job, in the order of conveyor.ops.CLAIM_FIELDS.
-- They are read before the claim, so started_ms and worker describe the previous holder.
local CLAIM_FIELDS = {'id', 'name', 'payload', 'attempt', 'max_attempts', 'timeout_ms',
  'options', 'created_ms', 'priority', 'stalls', 'started_ms', 'worker'}

-- Give the lock of one job to a worker and append its claim fields and token to out.
local function claim(job_key, job_id, token, worker_id, now, lock_ttl_ms, active_key, out)
  local values = redis.call('HMGET', job_key, unpack(CLAIM_FIELDS))
  for i = 1, #CLAIM_FIELDS do
    out[#out + 1] = values[i] or ''
  end
  out[#out + 1] = token
  redis.call('HSET', job_key, 'state', 'active', 'token', token, 'worker', worker_id,
    'started_ms', now)
  redis.call('ZADD', active_key, int(now + lock_ttl_ms), job_id)
end
