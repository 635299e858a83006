-- Forgets a scope's counters and leases and starts a new reset epoch, so that settling a reservation
-- made before the reset corrects nothing charged after it.
--
-- The epoch key has no TTL: a reservation made before the reset, however long it lives (a config
-- may have shortened the lease since), must still see that a reset happened. One small key per user
-- and model ever reset.
--
-- KEYS: reset epoch, lease set, then the counters
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('INCR', KEYS[1])
return 1
