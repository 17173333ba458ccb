-- promote.lua: move low-lane ids that waited too long to the pop end of the normal lane.
-- An id no longer in the low lane (popped meanwhile, or moved by an earlier pass) is
-- skipped, so a pass repeated over the same ids moves each one once at most.
--
-- KEYS[1]        the queue's low lane (list)
-- KEYS[2]        the queue's normal lane (list)
-- ARGV[1..n]     the job ids to move
-- Returns how many ids were moved.

local moved = 0
for i = 1, #ARGV do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    -- Workers pop from the right: the aged job is the next one the normal lane gives.
    redis.call('RPUSH', KEYS[2], ARGV[i])
    moved = moved + 1
  end
end
return moved
