-- Mark a game as waiting for the player on turn (after the server's pacing pause).
-- KEYS[1] the game's status key
local status = redis.call('GET', KEYS[1])
if status == STATUS.STARTING or status == STATUS.IN_PROGRESS then
  redis.call('SET', KEYS[1], STATUS.WAITING_PLAYER)
  return 1
end
return 0
