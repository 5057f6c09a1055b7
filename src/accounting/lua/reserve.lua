-- ARGV[3] reservation id, ARGV[4] amount, ARGV[5] limit, ARGV[6] '1' to enforce.
-- A reservation id already present (held, or settled) is left as it is: 'dup'.
local field = 'h:' .. ARGV[3]
if redis.call('HEXISTS', key, field) == 1 then
  return reply('dup')
end
if ARGV[6] == '1' then
  local v = redis.call('HMGET', key, 'spent', 'reserved')
  if tonumber(v[1]) + tonumber(v[2]) + tonumber(ARGV[4]) > tonumber(ARGV[5]) then
    return reply('exceeded')
  end
end
redis.call('HINCRBY', key, 'reserved', ARGV[4])
redis.call('HSET', key, field, ARGV[4])
return reply('ok')
