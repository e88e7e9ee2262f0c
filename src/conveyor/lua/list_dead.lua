--[[
list_dead: scan the dead-letter set newest first from `cursor`, looking at no more than
`scan` entries, and return the jobs that match every given filter (empty = any). Jobs past
their retention (expiry score behind the server's clock) are left out, as counts does.
KEYS: dead job
ARGV: #cursor #scan #want #ids_only reason name error_type #since_ms #until_ms
  since_ms / until_ms bound the time the job died (0 = unbounded).
RETURNS: {next_cursor (-1 at the end), each matching job: its id if ids_only, else its
  hash as field/value pairs}
]]
-- @include time
local ids = redis.call('ZRANGE', dead_key, '+inf', now_ms(), 'BYSCORE', 'REV', 'LIMIT',
  cursor, scan)
local out = {-1}
local looked = 0
local matched = 0
for _, id in ipairs(ids) do
  if matched >= want then break end
  looked = looked + 1
  local f = redis.call('HMGET', job_key .. id, 'reason', 'name', 'error', 'finished_ms')
  local ok = f[2] ~= false
  if ok and reason ~= '' and f[1] ~= reason then ok = false end
  if ok and name ~= '' and f[2] ~= name then ok = false end
  if ok and error_type ~= '' then
    local decoded = f[3] and cjson.decode(f[3]) or {}
    if decoded['type'] ~= error_type then ok = false end
  end
  local died = tonumber(f[4] or 0)
  if ok and since_ms > 0 and died < since_ms then ok = false end
  if ok and until_ms > 0 and died > until_ms then ok = false end
  if ok then
    matched = matched + 1
    if ids_only == 1 then
      out[#out + 1] = id
    else
      out[#out + 1] = redis.call('HGETALL', job_key .. id)
    end
  end
end
if looked < #ids or #ids == scan then
  out[1] = cursor + looked
end
return out
