-- Mark a game as waiting for the player on turn (after the server's pacing pause).
-- KEYS[1] games:<g>:status
local status = redis.call('GET', KEYS[1])
if status == 'Starting' or status == 'In-Progress' then
  redis.call('SET', KEYS[1], 'Waiting Player')
  return 1
end
return 0
