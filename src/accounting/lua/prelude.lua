-- Shared head of the budget scripts. KEYS[1] is the budget-day hash
-- ({prefix}:budget:{budget}:{day}); ARGV[1] is its TTL in seconds and ARGV[2] the
-- newest generation the caller has seen ('' if none).
--
-- Fields: spent, reserved (integers), gen (when the hash was created), c:<replica>
-- (spent settled by a replica's scripts), k:<replica> (spent a replica restored or
-- seeded), h:<reservation id> (the amount held, or 'x' once settled or released).
--
-- A hash that does not exist is created with a new generation: the server time in
-- microseconds, or one more than the caller's newest if the clock is behind it. A
-- generation the caller has not seen before tells it the hash was lost and recreated.
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then
  local t = redis.call('TIME')
  local gen = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if ARGV[2] ~= '' and gen <= tonumber(ARGV[2]) then
    gen = tonumber(ARGV[2]) + 1
  end
  redis.call('HSET', key, 'gen', string.format('%016.0f', gen), 'spent', '0', 'reserved', '0')
end

-- {status, spent, reserved, gen, spent before this script}; refreshes the TTL.
local function reply(status, before)
  redis.call('EXPIRE', key, ARGV[1])
  local v = redis.call('HMGET', key, 'spent', 'reserved', 'gen')
  return {status, v[1], v[2], v[3], before or v[1]}
end

-- Takes the amount a reservation field held (`held`: its value) off reserved.
local function unhold(held)
  if held and held ~= 'x' and held ~= '0' then
    redis.call('HINCRBY', key, 'reserved', '-' .. held)
  end
end
