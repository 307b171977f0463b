-- Apply one attack, or answer "no enemy left". Atomic, one round trip.
-- KEYS[1] the game's status key (it routes the call to the game's slot on a cluster),
-- KEYS[2] the deadlines index (not on a cluster)
-- ARGV[1..11] the context (_prelude.lua), then game, user, enemy ('' = none)
-- The combat record goes out on the combat log channel in this round trip; when this
-- attack ends the game, its end and clean-up tasks go out on the lobby log channel.
-- Returns {'ERR', status, code} | {'NA', record} | {'OK', record, event}: the event as
-- published on the events channel: {t = 'turn' | 'complete', g, u = next user or winner,
-- n = log length, o = living members in turn order, m = all members (complete only)}
local c = context(KEYS[2])
local game, user, enemy = arg(1), arg(2), arg(3)
local order = K.order(game)

local status = redis.call('GET', K.status(game))
if not status then
  return {'ERR', 'UNKNOWN GAME TOKEN', 'UNKNOWN_GAME_TOKEN'}
end
-- the order holds living members only, so the player on turn needs no membership look-up
local head = redis.call('LINDEX', order, 0)
if head ~= user and redis.call('SISMEMBER', K.game(game), user) == 0 then
  return {'ERR', 'USER NOT IN THIS GAME', 'NOT_A_MEMBER'}
end
if status == STATUS.WAITING_LOBBY or status == STATUS.TIMED_OUT then
  return {'ERR', 'GAME NOT IN PROGRESS', 'GAME_NOT_IN_PROGRESS'}
end

if enemy == '' then
  -- "I see no enemy left": true only when the order holds nobody but (at most) the user
  for _, member in ipairs(redis.call('LRANGE', order, 0, -1)) do
    if member ~= user then
      return {'ERR', 'ENEMY STILL ALIVE', 'ENEMY_ALIVE'}
    end
  end
  return {'NA', '{"TIMESTAMP": "' .. c.ts .. '", "PAYLOAD": {"GAME_TOKEN": "' .. game .. '", "USER_TOKEN": "' .. user ..
    '"}, "STATUS": {"ACTION": "NA", "DETAILS": {"ENEMY_TOKEN": null, "ENEMY_STATUS": "DEAD"}}}'}
end

if status == STATUS.COMPLETED then
  return {'ERR', 'GAME COMPLETED', 'GAME_COMPLETED'}
end
if head ~= user then
  return {'ERR', 'NOT YOUR TURN', 'NOT_YOUR_TURN'}
end
if enemy == user then
  return {'ERR', 'CANNOT ATTACK YOURSELF', 'SELF_ATTACK'}
end
local enemy_key = K.hero(game, enemy)
local prior = tonumber(redis.call('HGET', enemy_key, 'health'))
if not prior then  -- no hero hash: not a member, or the worker's clean-up got there first
  if redis.call('SISMEMBER', K.game(game), enemy) == 0 then
    return {'ERR', 'ENEMY NOT IN THIS GAME', 'ENEMY_NOT_A_MEMBER'}
  end
  return {'ERR', 'HERO NOT AVAILABLE', 'HERO_GONE'}
end
local attack = tonumber(redis.call('HGET', K.hero(game, user), 'attack'))
if not attack then
  return {'ERR', 'HERO NOT AVAILABLE', 'HERO_GONE'}
end
if prior <= 0 then
  return {'ERR', 'ENEMY ALREADY DEAD', 'ENEMY_DEAD'}
end
local post = prior - attack
if post < 0 then post = 0 end
redis.call('HSET', enemy_key, 'health', string.format('%d', post))

local record = '{"TIMESTAMP": "' .. c.ts .. '", "PAYLOAD": {"GAME_TOKEN": "' .. game .. '", "USER_TOKEN": "' .. user ..
  '"}, "STATUS": {"ACTION": "ATTACK", "DETAILS": {"ENEMY_TOKEN": "' .. enemy .. '", "ENEMY_DAMAGE": ' ..
  string.format('%d', prior - post) .. ', "ENEMY_HEALTH_PRIOR": ' .. string.format('%d', prior) ..
  ', "ENEMY_HEALTH_POST": ' .. string.format('%d', post) .. '}}}'
local n = redis.call('RPUSH', K.logs(game), record)
publish_log(c, c.combat, 'Attack Completed', record)

redis.call('LMOVE', order, order, 'LEFT', 'RIGHT')
if post == 0 then
  redis.call('LREM', order, 0, enemy)
end
return {'OK', record, next_turn(c, game, status, redis.call('LRANGE', order, 0, -1), n, now_ms())}
