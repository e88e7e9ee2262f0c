-- A stored whole number, or nil when the value is missing or malformed: canonical digits
-- only, as HINCRBY reads them, and 16 at most, which a Lua number holds exactly (the rule
-- of conveyor.stored). Scripts never do arithmetic on a stored field without it: a job
-- hash may hold anything, and an error would abort a whole batch half-way.
local function whole(value)
  if type(value) ~= 'string' then return nil end
  if value == '0' or string.match(value, '^%-?[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$') then
    return tonumber(value)
  end
  return nil
end
