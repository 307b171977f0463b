-- A player left a game (its v2 session closed). While the lobby fills it gives its seat
-- back (the lone member: the lobby is timed out at once); in a game in progress a living
-- player forfeits. Atomic.
-- KEYS[1] the game's status key, KEYS[2] the deadlines index and KEYS[3]
-- games:participants (neither on a cluster, where the caller updates them)
-- ARGV[1..11] the context (_prelude.lua), then game, user, reason
-- Returns {'LEFT'} | {'TIMEOUT', event} | {'FORFEIT', record, event ('' = none)} | {'NONE'}
local c = context(KEYS[2])
local game, user = arg(1), arg(2)
local status = redis.call('GET', K.status(game))
if status == STATUS.WAITING_LOBBY then
  if redis.call('SISMEMBER', K.game(game), user) == 0 then
    return {'NONE'}
  end
  if redis.call('SCARD', K.game(game)) <= 1 then
    return {'TIMEOUT', time_out(c, game)}
  end
  redis.call('SREM', K.heroes_taken(game), redis.call('HGET', K.hero(game, user), 'id'))
  redis.call('DEL', K.hero(game, user))
  redis.call('SREM', K.game(game), user)
  if KEYS[3] then
    redis.call('ZINCRBY', KEYS[3], -1, game)
  end
  if redis.call('GET', K.host(game)) == user then  -- the clean-up of the game's keys follows the host
    local members = redis.call('SMEMBERS', K.game(game))
    table.sort(members)
    redis.call('SET', K.host(game), members[1])
  end
  publish_log(c, c.lobby, 'Player Left Game: ' .. game, '{"game_token": "' .. game .. '", "user_token": "' ..
    user .. '"}')
  return {'LEFT'}
end
local record, event = forfeit(c, game, user, arg(3), now_ms())
if record then
  return {'FORFEIT', record, event}
end
return {'NONE'}
