-- ARGV[3] expected generation ('' for any), ARGV[4] replica, ARGV[5] target,
-- ARGV[6] 'carry' or 'share'.
-- Raises a replica's part of spent to at least the target, adding the difference to
-- spent: 'carry' compares the target with k:<replica> alone (what the replica restores
-- after the hash was lost), 'share' with k:<replica> + c:<replica> (the replica's whole
-- part, compared with its ledger when seeding). Answers 'moved' without writing when the
-- hash is not of the expected generation.
if ARGV[3] ~= '' and redis.call('HGET', key, 'gen') ~= ARGV[3] then
  return reply('moved')
end
local carry = tonumber(redis.call('HGET', key, 'k:' .. ARGV[4]) or '0')
local have = carry
if ARGV[6] == 'share' then
  have = have + tonumber(redis.call('HGET', key, 'c:' .. ARGV[4]) or '0')
end
local target = tonumber(ARGV[5])
if have < target then
  redis.call('HINCRBY', key, 'spent', string.format('%.0f', target - have))
  redis.call('HSET', key, 'k:' .. ARGV[4], string.format('%.0f', carry + target - have))
end
return reply('ok')
