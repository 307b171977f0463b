-- Cluster mode, step 2 of a join: the game's own keys, all in the game's hash slot.
-- KEYS[1] the game's status key (routes the call to its slot)
-- ARGV[1..11] the context (_prelude.lua; no deadlines index here: the caller indexes),
-- then game, user, n, '1' if this user opened the game, then candidate heroes as (id, attack, health) triples, drawn by the server.
-- (No join record from here: on a cluster the lobby records go through the log transport.)
-- Returns {'OK', game, hero id, members joined, deadline, events...},
-- {'CLOSED', events...} when the lobby is no longer open (timed out here if past its
-- deadline), or {'ERR', status, code}.
local c = context()
local game, user, n = arg(1), arg(2), tonumber(arg(3))
local status = redis.call('GET', K.status(game))
if status and status ~= STATUS.WAITING_LOBBY then
  return {'CLOSED'}
end
local now = now_ms()
if status and (tonumber(redis.call('GET', K.deadline(game))) or 0) <= now then
  return {'CLOSED', time_out(c, game)}
end
local function answer(hero, joined, event)
  return {'OK', game, hero, joined, tonumber(redis.call('GET', K.deadline(game))) or 0, event}
end
if redis.call('SISMEMBER', K.game(game), user) == 1 then
  return answer(redis.call('HGET', K.hero(game, user), 'id'), redis.call('SCARD', K.game(game)))
end
local taken = K.heroes_taken(game)
local hero, attack, health
for i = CONTEXT + 5, #ARGV, 3 do
  if redis.call('SISMEMBER', taken, ARGV[i]) == 0 then
    hero, attack, health = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    break
  end
end
if not hero then
  return {'ERR', 'NOT ENOUGH SUPERHEROS', 'NO_HERO_LEFT'}
end
if not status then
  redis.call('SET', K.status(game), STATUS.WAITING_LOBBY)
  redis.call('SET', K.game_participants(game), n)
  set_deadline(c, game, now + c.lobby_ms)
end
if arg(4) == '1' then
  redis.call('SET', K.host(game), user)
end
redis.call('SADD', K.game(game), user)
redis.call('SADD', taken, hero)
redis.call('HSET', K.hero(game, user), 'id', hero, 'attack', attack, 'health', health)
local joined = redis.call('SCARD', K.game(game))
if joined >= n then
  return answer(hero, joined, start_game(c, game, now))
end
return answer(hero, joined)
