-- Prepended to every script by simlib.scripts, after a header made from simlib/keys.py
-- and simlib/game.py: K.<name>(...) builds each key name, STATUS.<NAME> is each status.
-- What several scripts share lives here.

-- The time on the Redis server's clock, in milliseconds: every deadline is on this one
-- clock, whichever process set it or applies it.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- What the calling process passes to every script that changes a game (ARGV[1..11]):
-- the record timestamp, the events channel, the combat and lobby log channels ('' = do
-- not publish), '1' to pause between turns, the turn and lobby time-outs in ms, where
-- clean-up tasks go: a pub/sub channel ('' = none) and a stream key ('' = none), the run
-- id and its record counter (every record published carries run and seq); and the
-- deadlines index key (none on a cluster, where the caller indexes deadlines itself).
-- A script's own arguments follow: arg(1), arg(2)...
local CONTEXT = 11

local function context(index_key)
  return {ts = ARGV[1], events = ARGV[2], combat = ARGV[3], lobby = ARGV[4], pause = ARGV[5] == '1',
          turn_ms = tonumber(ARGV[6]), lobby_ms = tonumber(ARGV[7]), tasks = ARGV[8], stream = ARGV[9],
          run = ARGV[10], seq = ARGV[11], index = index_key or ''}
end

local function arg(i)
  return ARGV[CONTEXT + i]
end

-- A UUID4-shaped token made from text (a seeded run's game tokens): the same text, the
-- same token, on any Redis.
local function seeded_token(text)
  local h = redis.sha1hex(text)
  local variant = ('89ab'):sub(tonumber(h:sub(17, 17), 16) % 4 + 1, tonumber(h:sub(17, 17), 16) % 4 + 1)
  return h:sub(1, 8) .. '-' .. h:sub(9, 12) .. '-4' .. h:sub(14, 16) .. '-' .. variant .. h:sub(18, 20) .. '-' ..
    h:sub(21, 32)
end

local function playing(status)
  return status == STATUS.STARTING or status == STATUS.IN_PROGRESS or status == STATUS.WAITING_PLAYER
end

-- The log transport's pub/sub message, byte for byte as simlib.logs.message_for writes it,
-- published from inside the script so a record goes out atomically with the change it
-- reports (a clean-up task cannot be lost between a game's end and its announcement),
-- numbered from the run's counter in the same step. channel '' = do not publish.
local function publish_log(c, channel, text, task)
  if channel == '' then
    return
  end
  redis.call('PUBLISH', channel, '{"level": "INFO", "timestamp": "' .. c.ts .. '", "name": "' .. channel ..
    '", "log_message": "' .. text .. '", "task": ' .. task .. ', "run": "' .. c.run .. '", "seq": ' ..
    redis.call('INCR', c.seq) .. '}')
end

local function json_list(items)
  if #items == 0 then
    return '[]'
  end
  return '["' .. table.concat(items, '", "') .. '"]'
end

-- "Game Finished: <status>" on the lobby channel, and one "Cleaning Game Records" task per
-- member (sorted) for the worker: a record on the tasks channel, and an entry in the
-- tasks stream (Redis Streams transport; kept until a worker acknowledges it).
local function publish_game_over(c, game, status, winner, members)
  table.sort(members)
  publish_log(c, c.lobby, 'Game Finished: ' .. status, '{"game_token": "' .. game .. '", "status": "' ..
    status .. '", "winner": ' .. (winner and ('"' .. winner .. '"') or 'null') .. ', "members": ' ..
    json_list(members) .. '}')
  for _, m in ipairs(members) do
    publish_log(c, c.tasks, 'Cleaning Game Records', '{"game_token": "' .. game .. '", "user_token": "' .. m .. '"}')
    if c.stream ~= '' then
      redis.call('XADD', c.stream, '*', 'game_token', game, 'user_token', m)
    end
  end
end

-- A game's deadline (ms, on the server's clock) lives in its own key; the index, a sorted
-- set of every game with a deadline, is how any process finds the ones that are due.
local function set_deadline(c, game, at)
  redis.call('SET', K.deadline(game), at)
  if c.index ~= '' then
    redis.call('ZADD', c.index, at, game)
  end
end

local function clear_deadline(c, game)
  redis.call('DEL', K.deadline(game))
  if c.index ~= '' then
    redis.call('ZREM', c.index, game)
  end
end

local function publish_event(c, event)
  local text = cjson.encode(event)
  redis.call('PUBLISH', c.events, text)
  return text
end

-- A full lobby starts: status 'Starting', the turn order (the sorted members), the first
-- turn's deadline, and the start event, which carries what START shows (members, heroes)
-- so no server reads it back. Events that set a deadline carry it (d, ms). Returns the
-- event as published.
local function start_game(c, game, now)
  redis.call('SET', K.status(game), STATUS.STARTING)
  local members = redis.call('SMEMBERS', K.game(game))
  table.sort(members)
  redis.call('DEL', K.order(game))
  redis.call('RPUSH', K.order(game), unpack(members))
  local heroes = {}
  for _, m in ipairs(members) do
    heroes[m] = redis.call('HMGET', K.hero(game, m), 'id', 'attack', 'health')
  end
  set_deadline(c, game, now + c.turn_ms)
  local shown = {}
  for _, m in ipairs(members) do
    local h = heroes[m]
    table.insert(shown, '"' .. m .. '": {"id": ' .. h[1] .. ', "attack": ' .. h[2] .. ', "health": ' .. h[3] .. '}')
  end
  publish_log(c, c.lobby, 'Game Started: ' .. game, '{"game_token": "' .. game .. '", "members": ' ..
    json_list(members) .. ', "heroes": {' .. table.concat(shown, ', ') .. '}}')
  return publish_event(c, {t = 'start', g = game, u = members[1], n = 0, m = members, h = heroes,
                           d = now + c.turn_ms})
end

-- A lobby that did not fill in time: 'Timed Out', its end and clean-up tasks published.
-- Returns the timeout event (it carries the members, for the callers' own records).
local function time_out(c, game)
  redis.call('SET', K.status(game), STATUS.TIMED_OUT)
  clear_deadline(c, game)
  local members = redis.call('SMEMBERS', K.game(game))
  local event = publish_event(c, {t = 'timeout', g = game, u = '', n = 0, m = members})
  publish_game_over(c, game, STATUS.TIMED_OUT, nil, members)
  return event
end

-- After the order changed (an attack, a forfeit): with one hero left the game is
-- Completed, else the head of the order is on turn with a new deadline. n = log length.
-- Returns the event as published (complete, or turn).
local function next_turn(c, game, status, living, n, now)
  if #living <= 1 then
    redis.call('SET', K.status(game), STATUS.COMPLETED)
    clear_deadline(c, game)
    local members = redis.call('SMEMBERS', K.game(game))
    publish_game_over(c, game, STATUS.COMPLETED, living[1], members)
    return publish_event(c, {t = 'complete', g = game, u = living[1], n = n, o = living, m = members})
  end
  local next_status = c.pause and STATUS.IN_PROGRESS or STATUS.WAITING_PLAYER
  if status ~= next_status then
    redis.call('SET', K.status(game), next_status)
  end
  set_deadline(c, game, now + c.turn_ms)
  return publish_event(c, {t = 'turn', g = game, u = living[1], n = n, o = living, d = now + c.turn_ms})
end

-- A living player gives up (reason 'TURN TIMEOUT' or 'DISCONNECTED'): its hero's health
-- goes to 0, a FORFEIT record is logged and published like an attack, and it leaves the
-- order. Returns the record and the event ('' when the player on turn did not change),
-- or nil when the user is not a living player of a game in progress.
local function forfeit(c, game, user, reason, now)
  local status = redis.call('GET', K.status(game))
  if not playing(status) then
    return nil
  end
  local order = K.order(game)
  local was_head = redis.call('LINDEX', order, 0) == user
  if redis.call('LREM', order, 0, user) == 0 then
    return nil
  end
  redis.call('HSET', K.hero(game, user), 'health', '0')
  local record = '{"TIMESTAMP": "' .. c.ts .. '", "PAYLOAD": {"GAME_TOKEN": "' .. game .. '", "USER_TOKEN": "' ..
    user .. '"}, "STATUS": {"ACTION": "FORFEIT", "DETAILS": {"REASON": "' .. reason .. '"}}}'
  local n = redis.call('RPUSH', K.logs(game), record)
  publish_log(c, c.combat, 'Player Forfeited', record)
  local living = redis.call('LRANGE', order, 0, -1)
  if was_head or #living <= 1 then
    return record, next_turn(c, game, status, living, n, now)
  end
  return record, ''
end
