-- ARGV[3] reservation id. Marks the id 'x' even when it was never held here, so that a
-- reserve arriving late for it (its reply had been lost) holds nothing.
local field = 'h:' .. ARGV[3]
local held = redis.call('HGET', key, field)
if held == 'x' then
  return reply('dup')
end
unhold(held)
redis.call('HSET', key, field, 'x')
return reply('ok')
