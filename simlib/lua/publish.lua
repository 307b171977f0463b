-- Publish log records numbered in one atomic step: each gets the next seq of its run, so
-- the records of a run are numbered 1, 2, 3... whichever process sends them.
-- KEYS[1] the run's record counter
-- ARGV: per record, (channel, head, tail): the message is head .. seq .. tail
-- Returns the last seq given.
local n = #ARGV / 3
local last = redis.call('INCRBY', KEYS[1], n)
local seq = last - n
for i = 1, #ARGV, 3 do
  seq = seq + 1
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1] .. seq .. ARGV[i + 2])
end
return last
