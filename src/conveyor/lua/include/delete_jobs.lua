-- Delete the jobs `ids` (read from the sorted set `set_key`) and take them out of that set.
-- Returns how many there were. Uses the bound key job (a prefix).
local function delete_jobs(set_key, ids)
  for _, id in ipairs(ids) do
    redis.call('DEL', job_key .. id)
  end
  if #ids > 0 then
    redis.call('ZREM', set_key, unpack(ids))
  end
  return #ids
end
