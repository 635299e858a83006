-- Forgets a scope's counters and leases and starts a new reset epoch, so that settling a reservation
-- made before the reset corrects nothing charged after it.
--
-- KEYS: reset epoch, lease set, then the counters
-- ARGV: epoch TTL ms (as long as a reservation can live)
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
