-- Prepended to every script by simlib.server.load_script: what several scripts share.
--
-- The log transport's pub/sub message, byte for byte as simlib.logs.message_for writes it,
-- published from inside the script so a record goes out atomically with the change it
-- reports (a clean-up task cannot be lost between a game's end and its announcement).
-- channel '' = do not publish.
local function publish_log(channel, ts, text, task)
  if channel == '' then
    return
  end
  redis.call('PUBLISH', channel, '{"level": "INFO", "timestamp": "' .. ts .. '", "name": "' .. channel ..
    '", "log_message": "' .. text .. '", "task": ' .. task .. '}')
end

local function json_list(items)
  if #items == 0 then
    return '[]'
  end
  return '["' .. table.concat(items, '", "') .. '"]'
end

-- "Game Finished: <status>" and one "Cleaning Game Records" task per member (sorted)
local function publish_game_over(channel, ts, game, status, winner, members)
  if channel == '' then
    return
  end
  table.sort(members)
  publish_log(channel, ts, 'Game Finished: ' .. status, '{"game_token": "' .. game .. '", "status": "' .. status ..
    '", "winner": ' .. (winner and ('"' .. winner .. '"') or 'null') .. ', "members": ' .. json_list(members) .. '}')
  for _, m in ipairs(members) do
    publish_log(channel, ts, 'Cleaning Game Records', '{"game_token": "' .. game .. '", "user_token": "' .. m .. '"}')
  end
end

-- A full lobby starts: status 'Starting', the turn order (the sorted members), and the
-- start event, which carries what START shows (members, heroes) so no server reads it
-- back. hero_prefix .. member is that member's hero hash.
local function start_game(status_key, members_key, order_key, hero_prefix, events, game)
  redis.call('SET', status_key, 'Starting')
  local members = redis.call('SMEMBERS', members_key)
  table.sort(members)
  redis.call('DEL', order_key)
  redis.call('RPUSH', order_key, unpack(members))
  local heroes = {}
  for _, m in ipairs(members) do
    heroes[m] = redis.call('HMGET', hero_prefix .. m, 'id', 'attack', 'health')
  end
  redis.call('PUBLISH', events, cjson.encode({t = 'start', g = game, u = members[1], n = 0, m = members, h = heroes}))
end
