-- Adds hits to fixed-window counters and returns each total after the addition.
-- KEYS: the counters. ARGV: per counter, hits then ttlMs (hits 0: read only, never creating a key).
-- Amounts go in as the caller's strings: a Lua number would be formatted as 1e+14 and refused.
local totals = {}
for i = 1, #KEYS do
  local hits, ttl = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  if tonumber(hits) == 0 then
    totals[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  else
    totals[i] = redis.call('INCRBY', KEYS[i], hits)
    -- Only ever extended: a counter lives to the end of its window.
    if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
return totals
