-- KEYS[1] alert key ({prefix}:alert:{budget}:{day}:{threshold}); ARGV[1] token,
-- ARGV[2] TTL in seconds. 1 when the claim is (now or already) held by this token.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 1
end
return 0
