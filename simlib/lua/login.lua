-- Log a user in: register the name on first use. Atomic, one round trip.
-- KEYS[1] users hash, KEYS[2] the set of user tokens, KEYS[3] the live v2 sessions
-- (name -> server id), KEYS[4] superheros (left out on a cluster, where it lives in
-- another slot: the server checks it first)
-- ARGV[1] user name, ARGV[2] a fresh token to use if the name is new, ARGV[3] the id of
-- the server whose v2 session logs in ('' for a v1 login, which claims nothing)
-- Returns {created (0/1), token}; {-1} when no heroes are loaded, {-2} when a live v2
-- session holds the name (its server's lease key exists). Nothing is written then.
local name, fresh, server = ARGV[1], ARGV[2], ARGV[3]
if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 0 then
  return {-1}
end
if server ~= '' then
  local holder = redis.call('HGET', KEYS[3], name)
  if holder and redis.call('EXISTS', K.server_lease(holder)) == 1 then
    return {-2}
  end
end
local created = redis.call('HSETNX', KEYS[1], name, fresh)
local token = fresh
if created == 0 then
  token = redis.call('HGET', KEYS[1], name)
end
redis.call('SADD', KEYS[2], token)
if server ~= '' then
  redis.call('HSET', KEYS[3], name, server)
end
return {created, token}
