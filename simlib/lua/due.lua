-- The games whose deadline has passed, by the server's clock.
-- KEYS[1] the deadlines index   ARGV[1] at most this many
-- Returns {now (ms), the earliest deadline in the index (-1 if empty), due games...}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local out = {now, first[2] and tonumber(first[2]) or -1}
for _, g in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))) do
  table.insert(out, g)
end
return out
