-- One clean-up task, atomically: REDIS_EXPIRY seconds on the member's hero hash; when the
-- member is the host, on every other key of the game too, which leaves the games lists.
-- The first time a game is cleaned (its status has no expiry yet), it is archived first:
-- one entry in the archive stream with what the game was. A task from the tasks stream is
-- acknowledged in the same step, so it is either done and acknowledged, or neither.
-- KEYS[1] the game's status key, KEYS[2] games:participants, KEYS[3] the archive stream,
-- KEYS[4] the tasks stream (KEYS[2..4] not on a cluster: the caller does those steps)
-- ARGV[1] game, ARGV[2] user, ARGV[3] ttl, ARGV[4] archive length cap, ARGV[5] the task's
-- entry id in the tasks stream ('' = none), ARGV[6] the consumer group
-- Returns {host (1/0), n (the game's participant count, '' if gone), then the archive
-- entry's fields as a flat list when this call archived the game}
local game, user, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local host = redis.call('GET', K.host(game))
redis.call('EXPIRE', K.hero(game, user), ttl)
local out = {host == user and 1 or 0, redis.call('GET', K.game_participants(game)) or ''}
if host == user then
  local status = redis.call('GET', K.status(game))
  if status and redis.call('TTL', K.status(game)) == -1 then
    local members = redis.call('SMEMBERS', K.game(game))
    table.sort(members)
    local heroes = {}
    for _, m in ipairs(members) do
      local h = redis.call('HMGET', K.hero(game, m), 'id', 'attack', 'health')
      table.insert(heroes, '"' .. m .. '": {"id": ' .. (h[1] or 'null') .. ', "attack": ' .. (h[2] or 'null') ..
        ', "health": ' .. (h[3] or 'null') .. '}')
    end
    local winner = ''
    if status == STATUS.COMPLETED then
      winner = redis.call('LINDEX', K.order(game), 0) or ''
    end
    local fields = {'game_token', game, 'status', status, 'winner', winner,
                    'participants', redis.call('GET', K.game_participants(game)) or '', 'host', host,
                    'members', json_list(members), 'heroes', '{' .. table.concat(heroes, ', ') .. '}',
                    'logs', '[' .. table.concat(redis.call('LRANGE', K.logs(game), 0, -1), ', ') .. ']'}
    if KEYS[3] then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(fields))
    end
    for _, f in ipairs(fields) do
      table.insert(out, f)
    end
  end
  for _, key in ipairs(K.game_keys(game)) do
    redis.call('EXPIRE', key, ttl)
  end
  if KEYS[2] and out[2] ~= '' then
    redis.call('ZREM', KEYS[2], game)
    redis.call('LREM', K.players(out[2]), 1, game)
  elseif KEYS[2] then
    redis.call('ZREM', KEYS[2], game)
  end
end
if KEYS[4] and ARGV[5] ~= '' then
  redis.call('XACK', KEYS[4], ARGV[6], ARGV[5])
end
return out
