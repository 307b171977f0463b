-- Cluster mode: stop offering a lobby that closed (timed out, or its last member left),
-- or give back one member's seat in it. The matchmaking slot's half of those changes.
-- KEYS[1] {games:players:<n>}:open   ARGV[1] game token, ARGV[2] user ('' = close the lobby)
-- Returns 1 when the open lobby was that game (and so was changed), else 0.
if redis.call('HGET', KEYS[1], 'game') ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
elseif redis.call('HDEL', KEYS[1], 'u:' .. ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'seats', -1)
end
return 1
