-- llmkernel.keys v1
-- The gateway's key records (key layout keys1): KEYS[1] a hash name -> record
-- JSON, KEYS[2] a hash secret hash -> name, KEYS[3] a hash name -> the JSON list
-- of that name's hashes, KEYS[4] the version counter (INCR on every change, and a
-- PUBLISH on ARGV[2], the channel, so instances reload within their poll).
-- Records are data: they have no TTL.
-- ARGV[1]: put or delete; ARGV[3]: the name; put: ARGV[4] the record, ARGV[5] the
-- JSON list of its hashes. -> the new version

local op, channel, name = ARGV[1], ARGV[2], ARGV[3]
local owned = redis.call('HGET', KEYS[3], name)
if owned then
  for _, h in ipairs(cjson.decode(owned)) do
    if redis.call('HGET', KEYS[2], h) == name then
      redis.call('HDEL', KEYS[2], h)
    end
  end
end
if op == 'put' then
  redis.call('HSET', KEYS[1], name, ARGV[4])
  redis.call('HSET', KEYS[3], name, ARGV[5])
  for _, h in ipairs(cjson.decode(ARGV[5])) do
    redis.call('HSET', KEYS[2], h, name)
  end
elseif op == 'delete' then
  redis.call('HDEL', KEYS[1], name)
  redis.call('HDEL', KEYS[3], name)
else
  return redis.error_reply('llmkernel.keys: unknown operation ' .. tostring(op))
end
local version = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', channel, version)
return version
