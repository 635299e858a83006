-- Checks every window counter and the concurrency lease set, and only if all have room charges
-- them all and records the reservation. A denial changes nothing but dropping expired entries.
-- Idempotent per attempt: run again with the same attempt (a resend after a lost reply), it finds
-- its own reservation and charges nothing more.
--
-- KEYS: counter 1..n, lease set, reservation, fallback reservation, tombstone of the asked-for id, reset epoch
-- ARGV: n, then per counter (limit, cost, bucket, oldestCounted, ttlMs) with limit -1 = unlimited,
--       then leaseLimit (-1 = unlimited, -2 = take no lease), nowMs, leaseExpiresAtMs, leaseTtlMs,
--       reservationId, fallbackReservationId, attempt, record (JSON), recordTtlMs
-- Reply: {1, 0|1 (asked-for or fallback id), used 1..n, leases held} admitted; {0, i, bucket, amount, ...} denied
--        by counter i; {0, 0, earliest lease expiry} denied by the concurrency limit
local n = tonumber(ARGV[1])
local rest = 1 + n * 5
local leaseKey, reservationKey, fallbackKey, tombstoneKey, epochKey = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], KEYS[n + 4], KEYS[n + 5]
local attempt = ARGV[rest + 7]

local replayed = nil
if redis.call('HGET', reservationKey, 'attempt') == attempt then
  replayed = 0
elseif redis.call('EXISTS', fallbackKey) == 1 then
  replayed = 1
end

local used = {}
for i = 1, n do
  local at = 1 + (i - 1) * 5
  local limit = tonumber(ARGV[at + 1])
  local cost = tonumber(ARGV[at + 2])
  local oldest = tonumber(ARGV[at + 4])
  local flat = redis.call('HGETALL', KEYS[i])
  local counted, stale, sum = {}, {}, 0
  for j = 1, #flat, 2 do
    local bucket = tonumber(flat[j])
    if bucket < oldest then
      stale[#stale + 1] = flat[j]
    else
      local amount = tonumber(flat[j + 1])
      sum = sum + amount
      counted[#counted + 1] = { bucket, amount }
    end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[i], unpack(stale)) end
  if replayed then
    used[i] = sum
  elseif limit >= 0 and sum + cost > limit then
    table.sort(counted, function(a, b) return a[1] < b[1] end)
    local reply = { 0, i }
    for _, pair in ipairs(counted) do
      reply[#reply + 1] = pair[1]
      reply[#reply + 1] = pair[2]
    end
    return reply
  else
    used[i] = sum + cost
  end
end

if not replayed then
  local leaseLimit = tonumber(ARGV[rest + 1])
  local now = tonumber(ARGV[rest + 2])
  if leaseLimit ~= -2 then
    redis.call('ZREMRANGEBYSCORE', leaseKey, '-inf', now)
    local held = redis.call('ZCARD', leaseKey)
    if leaseLimit >= 0 and held >= leaseLimit then
      local first = redis.call('ZRANGE', leaseKey, 0, 0, 'WITHSCORES')
      return { 0, 0, tonumber(first[2] or now) }
    end
  end

  for i = 1, n do
    local at = 1 + (i - 1) * 5
    -- Amounts go to Redis as the caller's strings: a Lua number would be formatted as 1e+14 and refused.
    if tonumber(ARGV[at + 2]) > 0 then
      redis.call('HINCRBY', KEYS[i], ARGV[at + 3], ARGV[at + 2])
      -- Only ever extended: a counter must outlive every bucket that still counts.
      if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[at + 5]) then redis.call('PEXPIRE', KEYS[i], ARGV[at + 5]) end
    end
  end

  local recordTtl = tonumber(ARGV[rest + 9])
  local key, id = reservationKey, ARGV[rest + 5]
  replayed = 0
  if redis.call('EXISTS', reservationKey) == 1 or redis.call('EXISTS', tombstoneKey) == 1 then
    key, id, replayed = fallbackKey, ARGV[rest + 6], 1
  end
  local epoch = redis.call('GET', epochKey)
  if leaseLimit ~= -2 then
    redis.call('ZADD', leaseKey, ARGV[rest + 3], id)
    redis.call('PEXPIRE', leaseKey, ARGV[rest + 4])
  end
  redis.call('HSET', key, 'record', ARGV[rest + 8], 'attempt', attempt, 'epoch', epoch or '0')
  redis.call('PEXPIRE', key, recordTtl)
end

local reply = { 1, replayed }
for i = 1, n do reply[#reply + 1] = used[i] end
local held = 0
if tonumber(ARGV[rest + 1]) ~= -2 then held = redis.call('ZCARD', leaseKey) end
reply[#reply + 1] = held
return reply
