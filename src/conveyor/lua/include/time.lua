-- The server's clock in milliseconds: every deadline is measured on this one clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Scores above 2^31 must not pass through Lua's %.14g number formatting.
local function int(n)
  return string.format('%.0f', n)
end
