-- Mark a game as waiting for the player on turn (after the server's pacing pause).
-- KEYS[1] games:<g>:status
if redis.call('GET', KEYS[1]) == 'Starting' or redis.call('GET', KEYS[1]) == 'In-Progress' then
  redis.call('SET', KEYS[1], 'Waiting Player')
  return 1
end
return 0
