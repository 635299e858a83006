-- Adds a batch of increments to report aggregates (sorted sets) and sets each one's expiry, once:
-- a batch whose id was applied before changes nothing (a resend after a lost reply).
-- KEYS[1]: the batch's marker; KEYS[2..]: the aggregates.
-- ARGV[1]: how long the marker lives (ms); then, for each aggregate in order: expire-at (unix ms), n,
-- then n pairs member, amount.
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) == false then
  return 0
end
local a = 2
for i = 2, #KEYS do
  local expireAt = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    redis.call('ZINCRBY', KEYS[i], ARGV[a + 1], ARGV[a])
    a = a + 2
  end
  redis.call('PEXPIREAT', KEYS[i], expireAt)
end
return #KEYS - 1
