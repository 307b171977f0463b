-- Apply a game's deadline if it is due, atomically: whichever process calls first applies
-- it, the others find nothing to do. A lobby past its deadline is Timed Out; the player
-- on turn past its deadline forfeits ('TURN TIMEOUT').
-- KEYS[1] the game's status key, KEYS[2] the deadlines index (not on a cluster)
-- ARGV[1..11] the context (_prelude.lua), then the game
-- Returns {kind, deadline, record, event}: kind 'GONE' (the game ended or no longer
-- exists: its index entry is dropped), 'LATER' (not due: deadline is the true one),
-- 'TIMEOUT' or 'FORFEIT' (applied; deadline is the next one, 0 if none).
local c = context(KEYS[2])
local game = arg(1)
local status = redis.call('GET', K.status(game))
if not status or status == STATUS.COMPLETED or status == STATUS.TIMED_OUT then
  clear_deadline(c, game)
  return {'GONE', 0, '', ''}
end
local now = now_ms()
local at = tonumber(redis.call('GET', K.deadline(game)))
if not at then  -- a game from before deadlines: give it one
  at = now + (status == STATUS.WAITING_LOBBY and c.lobby_ms or c.turn_ms)
  set_deadline(c, game, at)
end
if at > now then
  if c.index ~= '' then
    redis.call('ZADD', c.index, at, game)  -- the index was early: it gets the true deadline
  end
  return {'LATER', at, '', ''}
end
if status == STATUS.WAITING_LOBBY then
  return {'TIMEOUT', 0, '', time_out(c, game)}
end
local record, event = forfeit(c, game, redis.call('LINDEX', K.order(game), 0), 'TURN TIMEOUT', now)
if not record then  -- an order with no one on turn: nothing left to play for
  clear_deadline(c, game)
  return {'GONE', 0, '', ''}
end
return {'FORFEIT', tonumber(redis.call('GET', K.deadline(game))) or 0, record, event}
