-- Apply one attack, or answer "no enemy left". Atomic, one round trip.
-- KEYS (one game's, so one hash slot on a cluster): [1] status, [2] members, [3] order,
-- [4] logs, [5] the user's hero hash, [6] the enemy's hero hash (the user's if no enemy)
-- ARGV[1] game, ARGV[2] user, ARGV[3] enemy ('' = none), ARGV[4] timestamp,
-- ARGV[5] events channel, ARGV[6] '1' to pause between turns,
-- ARGV[7] combat log channel ('' = do not publish): the record goes out as the log
-- transport's message (level, timestamp, name, log_message, task), in this round trip
-- ARGV[8] lobby log channel ('' = do not publish): where the game's end and its clean-up
-- tasks go when this attack ends the game
-- Returns {'ERR', status, code} | {'NA', record} | {'OK', record, event}: the event is the JSON published on
-- the events channel: {t = 'turn' | 'complete', g, u = next user or winner, n = log length,
-- o = living members in turn order, m = all members (complete only)}
local game, user, enemy, ts = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local status_key, members, order, logs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local status = redis.call('GET', status_key)
if not status then
  return {'ERR', 'UNKNOWN GAME TOKEN', 'UNKNOWN_GAME_TOKEN'}
end
-- the order holds members only, so the player on turn needs no membership look-up
local head = redis.call('LINDEX', order, 0)
if head ~= user and redis.call('SISMEMBER', members, user) == 0 then
  return {'ERR', 'USER NOT IN THIS GAME', 'NOT_A_MEMBER'}
end
if status == 'Waiting Lobby' or status == 'Timed Out' then
  return {'ERR', 'GAME NOT IN PROGRESS', 'GAME_NOT_IN_PROGRESS'}
end

if enemy == '' then
  -- "I see no enemy left": true only when the order holds nobody but (at most) the user
  for _, member in ipairs(redis.call('LRANGE', order, 0, -1)) do
    if member ~= user then
      return {'ERR', 'ENEMY STILL ALIVE', 'ENEMY_ALIVE'}
    end
  end
  return {'NA', '{"TIMESTAMP": "' .. ts .. '", "PAYLOAD": {"GAME_TOKEN": "' .. game .. '", "USER_TOKEN": "' .. user ..
    '"}, "STATUS": {"ACTION": "NA", "DETAILS": {"ENEMY_TOKEN": null, "ENEMY_STATUS": "DEAD"}}}'}
end

if status == 'Completed' then
  return {'ERR', 'GAME COMPLETED', 'GAME_COMPLETED'}
end
if head ~= user then
  return {'ERR', 'NOT YOUR TURN', 'NOT_YOUR_TURN'}
end
if enemy == user then
  return {'ERR', 'CANNOT ATTACK YOURSELF', 'SELF_ATTACK'}
end
local enemy_key = KEYS[6]
local prior = tonumber(redis.call('HGET', enemy_key, 'health'))
if not prior then  -- no hero hash: not a member, or the worker's clean-up got there first
  if redis.call('SISMEMBER', members, enemy) == 0 then
    return {'ERR', 'ENEMY NOT IN THIS GAME', 'ENEMY_NOT_A_MEMBER'}
  end
  return {'ERR', 'HERO NOT AVAILABLE', 'HERO_GONE'}
end
local attack = tonumber(redis.call('HGET', KEYS[5], 'attack'))
if not attack then
  return {'ERR', 'HERO NOT AVAILABLE', 'HERO_GONE'}
end
if prior <= 0 then
  return {'ERR', 'ENEMY ALREADY DEAD', 'ENEMY_DEAD'}
end
local post = prior - attack
if post < 0 then post = 0 end
redis.call('HSET', enemy_key, 'health', string.format('%d', post))

local record = '{"TIMESTAMP": "' .. ts .. '", "PAYLOAD": {"GAME_TOKEN": "' .. game .. '", "USER_TOKEN": "' .. user ..
  '"}, "STATUS": {"ACTION": "ATTACK", "DETAILS": {"ENEMY_TOKEN": "' .. enemy .. '", "ENEMY_DAMAGE": ' ..
  string.format('%d', prior - post) .. ', "ENEMY_HEALTH_PRIOR": ' .. string.format('%d', prior) ..
  ', "ENEMY_HEALTH_POST": ' .. string.format('%d', post) .. '}}}'
local n = redis.call('RPUSH', logs, record)
publish_log(ARGV[7], ts, 'Attack Completed', record)

redis.call('LMOVE', order, order, 'LEFT', 'RIGHT')
if post == 0 then
  redis.call('LREM', order, 0, enemy)
end
local living = redis.call('LRANGE', order, 0, -1)
local event = {g = game, u = living[1], n = n, o = living}
if #living <= 1 then
  redis.call('SET', status_key, 'Completed')
  event.t = 'complete'
  event.m = redis.call('SMEMBERS', members)  -- for the clean-up tasks, without a read back
  publish_game_over(ARGV[8], ts, game, 'Completed', living[1], event.m)
else
  local next_status = ARGV[6] == '1' and 'In-Progress' or 'Waiting Player'
  if status ~= next_status then
    redis.call('SET', status_key, next_status)
  end
  event.t = 'turn'
end
redis.call('PUBLISH', ARGV[5], cjson.encode(event))
return {'OK', record, cjson.encode(event)}
