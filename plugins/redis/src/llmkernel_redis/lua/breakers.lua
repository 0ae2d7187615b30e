-- llmkernel.breakers v1
-- Circuit-breaker state and health results shared by a fleet (key layout brk1),
-- on Redis's clock. Per deployment a hash KEYS[i]: until (us: open before it,
-- half-open from then until the key's TTL ends), reason, by.
-- ARGV[1]: open (ARGV: open, seconds (us), half-open window (s), reason, by; KEYS[1])
--          or read (KEYS: the deployments) -> per key: state, seconds left, reason

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]
if op == 'open' then
  local untill = now + tonumber(ARGV[2])
  local before = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
  if untill > before then
    redis.call('HSET', KEYS[1], 'until', untill, 'reason', ARGV[4], 'by', ARGV[5])
  end
  local ms = math.floor((math.max(untill, before) - now) / 1000) + tonumber(ARGV[3]) * 1000
  redis.call('PEXPIRE', KEYS[1], ms)
  return 1
elseif op == 'read' then
  local out = {}
  for i = 1, #KEYS do
    local found = redis.call('HMGET', KEYS[i], 'until', 'reason')
    if not found[1] then
      out[3 * i - 2], out[3 * i - 1], out[3 * i] = 'closed', '0', ''
    else
      local left = tonumber(found[1]) - now
      if left > 0 then
        out[3 * i - 2] = 'open'
        out[3 * i - 1] = tostring(left)
      else
        out[3 * i - 2] = 'half_open'
        out[3 * i - 1] = '0'
      end
      out[3 * i] = found[2] or ''
    end
  end
  return out
end
return redis.error_reply('llmkernel.breakers: unknown operation ' .. tostring(op))
