-- Put a user into the open lobby for n players, or open one. Atomic, one round trip,
-- and O(1) in the number of games ever played: only the newest game for n players can
-- be open, because every join goes through this script.
-- KEYS[1] games:players:<n>, KEYS[2] games:participants, KEYS[3] superheros
-- ARGV[1] user token, ARGV[2] n, ARGV[3] a fresh game token (used if a game is opened),
-- ARGV[4] game key format (e.g. 'games:%s'), ARGV[5] events channel, ARGV[6] timestamp,
-- ARGV[7] lobby log channel ('' = do not publish the "Player Joined Game" record)
-- Returns {game token, hero id, members joined, n}
local user, n, fresh, fmt = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]

local function answer(game, hero, joined)
  publish_log(ARGV[7], ARGV[6], 'Player Joined Game: ' .. game, '{"game_token": "' .. game .. '", "user_token": "' ..
    user .. '", "hero_id": ' .. hero .. ', "joined": ' .. joined .. ', "participants": ' .. n .. '}')
  return {game, hero, joined, n}
end

local game = redis.call('LINDEX', KEYS[1], -1)
local gk
if game then
  gk = string.format(fmt, game)
  if redis.call('GET', gk .. ':status') ~= 'Waiting Lobby' then
    game = nil
  elseif redis.call('SISMEMBER', gk, user) == 1 then
    -- already waiting in this lobby: answer again, change nothing
    return answer(game, redis.call('HGET', gk .. ':superheros:' .. user, 'id'), redis.call('SCARD', gk))
  elseif redis.call('SCARD', gk) >= n then
    game = nil
  end
end
local opening = not game
if opening then
  game = fresh
  gk = string.format(fmt, game)
end

-- draw a hero not yet taken in this game
local taken = gk .. ':superheros'
local hero
for _ = 1, 32 do
  local candidate = redis.call('HRANDFIELD', KEYS[3])
  if candidate and redis.call('SISMEMBER', taken, candidate) == 0 then
    hero = candidate
    break
  end
end
if not hero then  -- a roster with few heroes left: scan once
  for _, candidate in ipairs(redis.call('HKEYS', KEYS[3])) do
    if redis.call('SISMEMBER', taken, candidate) == 0 then
      hero = candidate
      break
    end
  end
end
if not hero then  -- refused before any write: a rejected join changes nothing
  return redis.error_reply('NO HERO LEFT')
end
if opening then
  redis.call('SET', gk .. ':status', 'Waiting Lobby')
  redis.call('SET', gk .. ':host', user)
  redis.call('SET', gk .. ':participants', n)
  redis.call('RPUSH', KEYS[1], game)
end
local stats = cjson.decode(redis.call('HGET', KEYS[3], hero))['powerstats']

redis.call('SADD', gk, user)
redis.call('SADD', taken, hero)
redis.call('HSET', gk .. ':superheros:' .. user, 'id', hero,
           'attack', string.format('%d', stats['attack']), 'health', string.format('%d', stats['health']))
local joined = redis.call('ZINCRBY', KEYS[2], 1, game)
joined = tonumber(joined)

if joined >= n then
  start_game(gk .. ':status', gk, gk .. ':order', gk .. ':superheros:', ARGV[5], game)
end
return answer(game, hero, joined)
