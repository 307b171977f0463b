-- A v2 session ended: its name is free again, unless another session holds it now.
-- KEYS[1] the live v2 sessions hash   ARGV[1] user name, ARGV[2] the session's server id
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
