-- A stored whole number, or nil when the value is missing or malformed: canonical digits
-- only, as HINCRBY reads them, and at most 2^53 either way, which a Lua number holds
-- exactly (the rule of conveyor.stored). Scripts never do arithmetic on a stored field
-- without it: a job hash may hold anything, and an error would abort a batch half-way.
local function whole(value)
  if type(value) ~= 'string' then return nil end
  local digits = value == '0' and '0' or string.match(value, '^%-?([1-9]%d*)$')
  if not digits or #digits > 16 or (#digits == 16 and digits > '9007199254740992') then
    return nil
  end
  return tonumber(value)
end
