-- Settles one reservation at most once: corrects the token windows from the reserved amount to the
-- charged one (in the buckets the reservation charged, never below zero), releases the concurrency
-- lease, and replaces the reservation with a tombstone so that a resent entry is recognised.
--
-- KEYS: reservation, tombstone, lease set, then the minute, hour and day token counters
-- ARGV: mode (actual | reserved | prompt | nothing), actual tokens, lease member, tombstone TTL ms, now ms
-- Reply: {1, reserved, prompt, charged} settled; {2} already settled; {3} no such reservation, or expired
if redis.call('EXISTS', KEYS[2]) == 1 then return { 2 } end
local raw = redis.call('GET', KEYS[1])
if not raw then return { 3 } end
local record = cjson.decode(raw)
if record.expiresAtMs < tonumber(ARGV[5]) then
  -- Settled by expiry already: the reservation stands as charged.
  redis.call('DEL', KEYS[1])
  return { 3 }
end

local mode = ARGV[1]
local charged = record.reservedTokens
if mode == 'actual' then
  charged = tonumber(ARGV[2])
elseif mode == 'prompt' then
  charged = record.promptTokens
elseif mode == 'nothing' then
  charged = 0
end

local delta = charged - record.reservedTokens
if delta ~= 0 then
  for i, bucket in ipairs(record.tokenBuckets) do
    local key, field = KEYS[3 + i], string.format('%d', bucket)
    -- A bucket that is gone (expired, or reset by an admin) has nothing left to correct.
    if redis.call('HEXISTS', key, field) == 1 then
      if redis.call('HINCRBY', key, field, delta) < 0 then redis.call('HSET', key, field, 0) end
    end
  end
end

redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
return { 1, record.reservedTokens, record.promptTokens, charged }
