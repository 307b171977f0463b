-- Prepended to every script by simlib.server.load_script: the log transport's pub/sub
-- message, byte for byte as simlib.logs.message_for writes it, published from inside the
-- script so a record goes out atomically with the change it reports (a clean-up task
-- cannot be lost between a game's end and its announcement). channel '' = do not publish.
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
