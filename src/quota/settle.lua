-- Settles one reservation at most once: corrects its token counters from the reserved amount to the
-- charged one (in the buckets it charged, never below zero, and not at all if the counters were reset
-- since), releases its concurrency lease, and replaces it with a tombstone so that a resent entry
-- is recognised.
--
-- KEYS: reservation, tombstone, lease set, reset epoch, then the scope's counters in ARGV's name order
-- ARGV: mode (actual | reserved | nothing | cancel), actual tokens, reservation id (the lease member),
--       tombstone TTL ms, now ms, attempt (cancel only settles the attempt's own reservation),
--       then the counter names
-- Reply: {1, reserved, prompt, charged, afterReset 0|1} settled; {2} already settled;
--        {3} no such reservation, or expired
if redis.call('EXISTS', KEYS[2]) == 1 then return { 2 } end
local fields = redis.call('HMGET', KEYS[1], 'record', 'attempt', 'epoch')
if not fields[1] then return { 3 } end
local mode = ARGV[1]
if mode == 'cancel' and fields[2] ~= ARGV[6] then return { 3 } end
local record = cjson.decode(fields[1])
redis.call('DEL', KEYS[1])
-- Settled by expiry already: the reservation stands as charged.
if record.expiresAtMs < tonumber(ARGV[5]) then return { 3 } end

local charged = record.reservedTokens
if mode == 'actual' then
  charged = tonumber(ARGV[2])
elseif mode == 'nothing' or mode == 'cancel' then
  charged = 0
end

local afterReset = (redis.call('GET', KEYS[4]) or '0') ~= fields[3]
if not afterReset then
  local counterKeys = {}
  for i = 7, #ARGV do counterKeys[ARGV[i]] = KEYS[4 + i - 6] end
  for _, c in ipairs(record.charges) do
    local name, bucket, cost, countsTokens = c[1], c[2], c[3], c[4]
    local delta = 0
    if mode == 'cancel' then
      delta = -cost
    elseif countsTokens then
      delta = charged - record.reservedTokens
    end
    local key, field = counterKeys[name], string.format('%d', bucket)
    -- A bucket that is gone (expired) has nothing left to correct.
    if delta ~= 0 and key and redis.call('HEXISTS', key, field) == 1 then
      if redis.call('HINCRBY', key, field, string.format('%d', delta)) < 0 then redis.call('HSET', key, field, 0) end
    end
  end
end

redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
return { 1, record.reservedTokens, record.promptTokens, charged, afterReset and 1 or 0, record.admittedAtMs or 0 }
