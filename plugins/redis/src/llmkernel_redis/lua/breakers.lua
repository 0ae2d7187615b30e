-- llmkernel.breakers v2
-- Circuit-breaker state and health results shared by a fleet (key layout brk1),
-- on Redis's clock. Per deployment a hash (until (us: open before it, half-open
-- from then until the key's TTL ends), reason, by) and a probe key (the owner of
-- the half-open probe's claim, with an expiry). v1's operations (open, read) keep
-- their arguments and replies, so v1 and v2 run side by side on the same keys.
-- ARGV[1]:
--   open    KEYS: hash[, probe]; ARGV: seconds (us), half-open window (s), reason, by
--           -> 1 (a later end wins; the probe's claim is over: a new cooldown began)
--   read    KEYS: the hashes -> per key: state, us left, reason
--   view    ARGV[2] = n; KEYS: n hashes, n probe keys, then health keys
--           -> per deployment: state, us left, reason, by, probe owner ('' none);
--              then per health key its value ('' none)
--   claim   KEYS: probe; ARGV: owner, ms -> 1 when the owner holds the claim now
--   renew   KEYS: probe; ARGV: owner, ms -> 1 when the owner's claim was extended
--   unclaim KEYS: probe; ARGV: owner -> 1 when its claim was given back
--   close   KEYS: hash, probe -> 1 when closed (an opening still running is kept)

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]

local function state_of(key)
  local found = redis.call('HMGET', key, 'until', 'reason', 'by')
  if not found[1] then
    return 'closed', '0', '', ''
  end
  local left = tonumber(found[1]) - now
  if left > 0 then
    return 'open', tostring(left), found[2] or '', found[3] or ''
  end
  return 'half_open', '0', found[2] or '', found[3] or ''
end

if op == 'open' then
  local untill = now + tonumber(ARGV[2])
  local before = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
  if untill > before then
    redis.call('HSET', KEYS[1], 'until', untill, 'reason', ARGV[4], 'by', ARGV[5])
  end
  local ms = math.floor((math.max(untill, before) - now) / 1000) + tonumber(ARGV[3]) * 1000
  redis.call('PEXPIRE', KEYS[1], ms)
  if KEYS[2] then
    redis.call('DEL', KEYS[2])
  end
  return 1
elseif op == 'read' then
  local out = {}
  for i = 1, #KEYS do
    local state, left, reason = state_of(KEYS[i])
    out[3 * i - 2], out[3 * i - 1], out[3 * i] = state, left, reason
  end
  return out
elseif op == 'view' then
  local n = tonumber(ARGV[2])
  local out = {}
  for i = 1, n do
    local state, left, reason, by = state_of(KEYS[i])
    local holder = redis.call('GET', KEYS[n + i]) or ''
    local at = 5 * (i - 1)
    out[at + 1], out[at + 2], out[at + 3], out[at + 4], out[at + 5] =
      state, left, reason, by, holder
  end
  for i = 2 * n + 1, #KEYS do
    out[#out + 1] = redis.call('GET', KEYS[i]) or ''
  end
  return out
elseif op == 'claim' then
  if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then
    return 1
  end
  if redis.call('GET', KEYS[1]) == ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return 1
  end
  return 0
elseif op == 'renew' then
  if redis.call('GET', KEYS[1]) == ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return 1
  end
  return 0
elseif op == 'unclaim' then
  if redis.call('GET', KEYS[1]) == ARGV[2] then
    redis.call('DEL', KEYS[1])
    return 1
  end
  return 0
elseif op == 'close' then
  redis.call('DEL', KEYS[2])
  local untill = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
  if untill > now then
    return 0
  end
  redis.call('DEL', KEYS[1])
  return 1
end
return redis.error_reply('llmkernel.breakers: unknown operation ' .. tostring(op))
