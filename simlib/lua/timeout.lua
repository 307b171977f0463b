-- Close a lobby that did not fill in time. Atomic with join.lua: a lobby either fills
-- or times out, never both.
-- KEYS[1] games:<g>:status, KEYS[2] games:<g> (members)
-- ARGV[1] game token, ARGV[2] events channel, ARGV[3] timestamp, ARGV[4] lobby log channel
-- ('' = do not publish the game's end and clean-up tasks)
-- Returns {1, members...} when this call timed the lobby out, {0, status} otherwise.
local status = redis.call('GET', KEYS[1])
if status ~= 'Waiting Lobby' then
  return {0, status or ''}
end
redis.call('SET', KEYS[1], 'Timed Out')
redis.call('PUBLISH', ARGV[2], '{"t":"timeout","g":"' .. ARGV[1] .. '","u":"","n":0}')
local members = redis.call('SMEMBERS', KEYS[2])
publish_game_over(ARGV[4], ARGV[3], ARGV[1], 'Timed Out', nil, members)
local out = {1}
for _, m in ipairs(members) do
  table.insert(out, m)
end
return out
