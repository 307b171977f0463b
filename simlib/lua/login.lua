-- Log a user in: register the name on first use. Atomic, one round trip.
-- KEYS[1] users hash, KEYS[2] superheros hash (left out on a cluster, where it lives in
-- another slot: the server checks it first)
-- ARGV[1] user name, ARGV[2] a fresh token to use if the name is new
-- Returns {created (0/1), token}, or {-1} when no heroes are loaded (nothing written).
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 0 then
  return {-1}
end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  return {1, ARGV[2]}
end
return {0, redis.call('HGET', KEYS[1], ARGV[1])}
