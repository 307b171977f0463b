-- Put a user into the open lobby for n players, or open one. Atomic, one round trip,
-- and O(1) in the number of games and users: only the newest game for n players can be
-- open, because every join goes through this script, and a user token is checked in a set.
-- KEYS[1] games:players:<n>, KEYS[2] the deadlines index, KEYS[3] games:participants,
-- KEYS[4] superheros, KEYS[5] the set of user tokens, KEYS[6] the run's game counter
-- ARGV[1..11] the context (_prelude.lua), then the user token, n, a fresh game token
-- (used if a game is opened), and the run's seed ('' = none). With a seed, a game's token
-- and each member's hero come from the seed and the game's place in the run (and the
-- member), not from chance, so a seeded run repeats.
-- A lobby past its deadline is never joined: it is timed out here, and a new one opened.
-- Returns {'ERR', status, code} or {'OK', game, hero id, members joined, lobby deadline,
-- events...}: the events this join published (a time-out of a stale lobby, a start).
local c = context(KEYS[2])
local user, n, fresh, seed = arg(1), tonumber(arg(2)), arg(3), arg(4)
local players, joins, roster = KEYS[1], KEYS[3], KEYS[4]

if redis.call('SISMEMBER', KEYS[5], user) == 0 then
  return {'ERR', 'UNKNOWN USER TOKEN', 'UNKNOWN_USER_TOKEN'}
end
if redis.call('EXISTS', roster) == 0 then
  return {'ERR', 'LIST OF SUPERHEROS NOT AVAILABLE', 'NO_HEROES'}
end
local now = now_ms()
local events = {}

local function answer(game, hero, joined)
  publish_log(c, c.lobby, 'Player Joined Game: ' .. game, '{"game_token": "' .. game .. '", "user_token": "' ..
    user .. '", "hero_id": ' .. hero .. ', "joined": ' .. joined .. ', "participants": ' .. n .. '}')
  local out = {'OK', game, hero, joined, tonumber(redis.call('GET', K.deadline(game))) or 0}
  for _, e in ipairs(events) do
    table.insert(out, e)
  end
  return out
end

local game = redis.call('LINDEX', players, -1)
if game then
  local status = redis.call('GET', K.status(game))
  if status ~= STATUS.WAITING_LOBBY then
    game = nil
  elseif (tonumber(redis.call('GET', K.deadline(game))) or 0) <= now then
    table.insert(events, time_out(c, game))
    game = nil
  elseif redis.call('SISMEMBER', K.game(game), user) == 1 then
    -- already waiting in this lobby: answer again, change nothing
    return answer(game, redis.call('HGET', K.hero(game, user), 'id'), redis.call('SCARD', K.game(game)))
  elseif redis.call('SCARD', K.game(game)) >= n then
    game = nil
  end
end
local opening = not game
if opening then
  game = seed == '' and fresh or seeded_token(seed .. ':game:' .. (tonumber(redis.call('GET', KEYS[6])) or 0) + 1)
end

-- draw a hero not yet taken in this game
local taken = K.heroes_taken(game)
local hero
if seed ~= '' then  -- from the seed, the game and the user: the same draw whoever joins first
  local ids = redis.call('HKEYS', roster)
  table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
  for try = 1, 64 do
    local pick = ids[tonumber(redis.sha1hex(seed .. ':' .. game .. ':' .. user .. ':' .. try):sub(1, 8), 16) % #ids + 1]
    if redis.call('SISMEMBER', taken, pick) == 0 then
      hero = pick
      break
    end
  end
else
  for _ = 1, 32 do
    local candidate = redis.call('HRANDFIELD', roster)
    if candidate and redis.call('SISMEMBER', taken, candidate) == 0 then
      hero = candidate
      break
    end
  end
end
if not hero then  -- a roster with few heroes left: scan once
  for _, candidate in ipairs(redis.call('HKEYS', roster)) do
    if redis.call('SISMEMBER', taken, candidate) == 0 then
      hero = candidate
      break
    end
  end
end
if not hero then  -- refused before any write of its own: a rejected join changes nothing
  return {'ERR', 'NOT ENOUGH SUPERHEROS', 'NO_HERO_LEFT'}
end
if opening then
  redis.call('INCR', KEYS[6])
  redis.call('SET', K.status(game), STATUS.WAITING_LOBBY)
  redis.call('SET', K.host(game), user)
  redis.call('SET', K.game_participants(game), n)
  redis.call('RPUSH', players, game)
  set_deadline(c, game, now + c.lobby_ms)
end
local stats = cjson.decode(redis.call('HGET', roster, hero))['powerstats']

redis.call('SADD', K.game(game), user)
redis.call('SADD', taken, hero)
redis.call('HSET', K.hero(game, user), 'id', hero,
           'attack', string.format('%d', stats['attack']), 'health', string.format('%d', stats['health']))
local joined = tonumber(redis.call('ZINCRBY', joins, 1, game))

if joined >= n then
  table.insert(events, start_game(c, game, now))
end
return answer(game, hero, joined)
