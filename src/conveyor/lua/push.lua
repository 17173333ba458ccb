-- push.lua: push job ids into lanes, only while Redis still holds the epoch we know.
-- A missing or different epoch means Redis lost its data since we last looked; pushing
-- then would hide the loss, so nothing is pushed and the caller rebuilds from PostgreSQL.
--
-- KEYS[1]        the epoch key
-- KEYS[2..n]     the lane keys (lists), one per group of ids
-- ARGV[1]        the epoch the caller expects
-- ARGV[2..n]     for each lane key, in the same order: how many ids follow for it
-- ARGV[n+1..]    the job ids, lane by lane, each group in the order they should be popped
-- Returns the number of ids pushed, or -1 when the epoch does not match.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end

local lanes = #KEYS - 1
local cursor = lanes + 2
local pushed = 0
for lane = 1, lanes do
  local count = tonumber(ARGV[lane + 1])
  local last = cursor + count - 1
  -- unpack() is limited by the Lua stack, so push in slices
  while cursor <= last do
    local stop = math.min(cursor + 999, last)
    redis.call('LPUSH', KEYS[lane + 1], unpack(ARGV, cursor, stop))
    pushed = pushed + (stop - cursor + 1)
    cursor = stop + 1
  end
end
return pushed
