-- Checks every window counter and the concurrency lease set, and only if all have room charges
-- them all and records the reservation. A denial changes nothing but dropping expired entries.
--
-- KEYS: counter 1..n, lease set, reservation key, fallback reservation key
-- ARGV: n, then per counter (limit, cost, bucket, oldestCounted, ttlMs) with limit -1 = unlimited,
--       then leaseLimit (-1 = unlimited), nowMs, leaseExpiresAtMs, leaseTtlMs,
--       reservationId, fallbackReservationId, record, recordTtlMs
local n = tonumber(ARGV[1])
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
  if limit >= 0 and sum + cost > limit then
    table.sort(counted, function(a, b) return a[1] < b[1] end)
    local reply = { 0, i }
    for _, pair in ipairs(counted) do
      reply[#reply + 1] = pair[1]
      reply[#reply + 1] = pair[2]
    end
    return reply
  end
  used[i] = sum + cost
end

local rest = 1 + n * 5
local leaseKey = KEYS[n + 1]
local leaseLimit = tonumber(ARGV[rest + 1])
local now = tonumber(ARGV[rest + 2])
redis.call('ZREMRANGEBYSCORE', leaseKey, '-inf', now)
local held = redis.call('ZCARD', leaseKey)
if leaseLimit >= 0 and held >= leaseLimit then
  local first = redis.call('ZRANGE', leaseKey, 0, 0, 'WITHSCORES')
  return { 0, 0, tonumber(first[2] or now) }
end

for i = 1, n do
  local at = 1 + (i - 1) * 5
  local cost = tonumber(ARGV[at + 2])
  if cost > 0 then
    redis.call('HINCRBY', KEYS[i], ARGV[at + 3], cost)
    redis.call('PEXPIRE', KEYS[i], ARGV[at + 5])
  end
end

local reservationKey, reservationId, chosen = KEYS[n + 2], ARGV[rest + 5], 0
if redis.call('EXISTS', reservationKey) == 1 then
  reservationKey, reservationId, chosen = KEYS[n + 3], ARGV[rest + 6], 1
end
redis.call('ZADD', leaseKey, ARGV[rest + 3], reservationId)
redis.call('PEXPIRE', leaseKey, ARGV[rest + 4])
redis.call('SET', reservationKey, ARGV[rest + 7], 'PX', ARGV[rest + 8])

local reply = { 1, chosen, held + 1 }
for i = 1, n do reply[#reply + 1] = used[i] end
return reply
