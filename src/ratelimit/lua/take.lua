-- Takes from every cell in KEYS, or from none: GCRA on each cell's TAT (microseconds,
-- Redis server time, so every replica shares one clock).
-- ARGV[1]: the window (µs); ARGV[1 + i]: the increment of KEYS[i] (µs).
-- Returns {1 if taken else 0, backlog of KEYS[1] before, backlog of KEYS[2] before, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local backlog = {}
local ok = 1
for i, key in ipairs(KEYS) do
  local b = tonumber(redis.call('GET', key) or '0') - now
  if b < 0 then b = 0 end
  backlog[i] = b
  if b + tonumber(ARGV[i + 1]) > window then ok = 0 end
end
if ok == 1 then
  for i, key in ipairs(KEYS) do
    local after = backlog[i] + tonumber(ARGV[i + 1])
    if after > 0 then
      redis.call('SET', key, string.format('%d', now + after), 'PX', math.ceil(after / 1000) + 1000)
    end
  end
end
local out = {ok}
for i = 1, #backlog do out[i + 1] = backlog[i] end
return out
