-- Adds to report aggregates (sorted sets) and sets each one's expiry.
-- KEYS: the aggregates. ARGV, for each key in order: expire-at (unix ms), n, then n pairs member, amount.
local a = 1
for i = 1, #KEYS do
  local expireAt = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    redis.call('ZINCRBY', KEYS[i], ARGV[a + 1], ARGV[a])
    a = a + 2
  end
  redis.call('PEXPIREAT', KEYS[i], expireAt)
end
return #KEYS
