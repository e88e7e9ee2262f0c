-- The fields a worker needs to run or settle a job, in the order of
-- conveyor.worker.calls.CLAIM_FIELDS. They are read before the claim, so started_ms and
-- worker describe the previous holder, and state the one the job was in. The worker checks
-- them all (a job with a malformed field is buried as invalid_job); here the id is the
-- one of the key, and a malformed attempt is passed on as it is, never counted.
-- @include fields
local CLAIM_FIELDS = {'id', 'name', 'payload', 'attempt', 'max_attempts', 'timeout_ms',
  'options', 'created_ms', 'priority', 'stalls', 'started_ms', 'worker', 'state', 'band',
  'keep_ms'}

-- Give the lock of one job to a worker and append its claim fields and token to out; with
-- next_attempt, the claim starts the job's next attempt (counted here). False, and nothing
-- changed, if the job's record is gone.
local function claim(job_key, job_id, token, worker_id, now, lock_ttl_ms, active_key, out,
                     next_attempt)
  local values = redis.call('HMGET', job_key, unpack(CLAIM_FIELDS))
  local exists = false
  for i = 1, #CLAIM_FIELDS do exists = exists or values[i] ~= false end
  if not exists then return false end
  values[1] = job_id
  local attempt = values[4] and whole(values[4]) or (not values[4] and 0)
  if next_attempt and attempt then
    values[4] = tostring(attempt + 1)
  end
  for i = 1, #CLAIM_FIELDS do
    out[#out + 1] = values[i] or ''
  end
  out[#out + 1] = token
  if next_attempt and attempt then
    redis.call('HSET', job_key, 'state', 'active', 'token', token, 'worker', worker_id,
      'started_ms', now, 'attempt', values[4])
  else
    redis.call('HSET', job_key, 'state', 'active', 'token', token, 'worker', worker_id,
      'started_ms', now)
  end
  redis.call('ZADD', active_key, int(now + lock_ttl_ms), job_id)
  return true
end
