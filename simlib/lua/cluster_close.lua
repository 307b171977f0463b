-- Cluster mode: stop offering a lobby that is timing out (the matchmaking slot's half
-- of a time-out; timeout.lua then closes the game in its own slot).
-- KEYS[1] {games:players:<n>}:open   ARGV[1] game token
if redis.call('HGET', KEYS[1], 'game') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
