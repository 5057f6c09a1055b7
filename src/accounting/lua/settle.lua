-- ARGV[3] reservation id, ARGV[4] actual cost, ARGV[5] replica.
-- Applies once per reservation id: a second run finds the 'x' mark and answers 'dup'.
-- A reservation this hash never held (made while Redis was unreachable, or lost with
-- the hash) only adds to spent.
local field = 'h:' .. ARGV[3]
local held = redis.call('HGET', key, field)
if held == 'x' then
  return reply('dup')
end
local before = redis.call('HGET', key, 'spent')
redis.call('HINCRBY', key, 'spent', ARGV[4])
redis.call('HINCRBY', key, 'c:' .. ARGV[5], ARGV[4])
unhold(held)
redis.call('HSET', key, field, 'x')
return reply('ok', before)
