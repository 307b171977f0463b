-- Cluster mode, step 1 of a join: take a seat in the open lobby for n players, or open
-- one. A script touches one hash slot only, so the seat count lives beside
-- games:players:<n> (KEYS[2], hash-tagged into its slot); step 2 (cluster_join.lua)
-- then writes the game's own keys in the game's slot.
-- KEYS[1] games:players:<n>, KEYS[2] {games:players:<n>}:open
-- ARGV[1] user, ARGV[2] n, ARGV[3] a fresh game token
-- Returns {game, seat (0 = already seated), opened (1/0)}
local user, n, fresh = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local game = redis.call('HGET', KEYS[2], 'game')
if game and redis.call('LINDEX', KEYS[1], -1) == game then
  if redis.call('HEXISTS', KEYS[2], 'u:' .. user) == 1 then
    return {game, 0, 0}
  end
  local seat = redis.call('HINCRBY', KEYS[2], 'seats', 1)
  redis.call('HSET', KEYS[2], 'u:' .. user, 1)
  if seat >= n then
    redis.call('DEL', KEYS[2])  -- full: no longer open
  end
  return {game, seat, 0}
end
redis.call('RPUSH', KEYS[1], fresh)
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'game', fresh, 'seats', 1, 'u:' .. user, 1)
return {fresh, 1, 1}
