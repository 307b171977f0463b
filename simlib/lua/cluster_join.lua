-- Cluster mode, step 2 of a join: the game's own keys, all in the game's hash slot.
-- KEYS[1] status, [2] host, [3] participants, [4] members, [5] heroes taken,
-- [6] the user's hero hash, [7] order
-- ARGV[1] game, [2] user, [3] n, [4] '1' if this user opened the game, [5] events
-- channel, then candidate heroes as (id, attack, health) triples, drawn by the server.
-- (No join record from here: on a cluster the lobby records go through the log transport.)
-- Returns {game, hero id, members joined} or an error: GAME CLOSED, NO HERO LEFT
local game, user, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local status = redis.call('GET', KEYS[1])
if status and status ~= 'Waiting Lobby' then
  return redis.error_reply('GAME CLOSED')
end
if redis.call('SISMEMBER', KEYS[4], user) == 1 then
  return {game, redis.call('HGET', KEYS[6], 'id'), redis.call('SCARD', KEYS[4])}
end
local hero, attack, health
for i = 6, #ARGV, 3 do
  if redis.call('SISMEMBER', KEYS[5], ARGV[i]) == 0 then
    hero, attack, health = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    break
  end
end
if not hero then
  return redis.error_reply('NO HERO LEFT')
end
if not status then
  redis.call('SET', KEYS[1], 'Waiting Lobby')
  redis.call('SET', KEYS[3], n)
end
if ARGV[4] == '1' then
  redis.call('SET', KEYS[2], user)
end
redis.call('SADD', KEYS[4], user)
redis.call('SADD', KEYS[5], hero)
redis.call('HSET', KEYS[6], 'id', hero, 'attack', attack, 'health', health)
local joined = redis.call('SCARD', KEYS[4])
if joined >= n then
  start_game(KEYS[1], KEYS[4], KEYS[7], KEYS[6]:sub(1, #KEYS[6] - #user), ARGV[5], game)
end
return {game, hero, joined}
