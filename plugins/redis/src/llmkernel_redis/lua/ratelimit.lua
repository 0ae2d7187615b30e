-- llmkernel.ratelimit v1
-- Sliding windows of requests and tokens (key layout rl1), the semantics of the
-- ratelimit plugin's MemoryStore: a window admits a claim when what it admitted in
-- the last `window` plus the claim fits the limit. Per bucket: a hash KEYS[2i-1]
-- (u: used, l: limit, b: blocked until, "#<id>": one admission's amount) and a
-- sorted set KEYS[2i] (<id> scored by the time it was admitted). Time is Redis's
-- TIME in microseconds; amounts and limits are integers; every key written gets a
-- TTL of its window (or its block) plus a second.
-- ARGV[1]: the operation: take, correct, absorb, block, observe.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]

local function expire(h, z, window)
  local edge = now - window
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', edge)
  if #old == 0 then
    return tonumber(redis.call('HGET', h, 'u') or '0')
  end
  local used = tonumber(redis.call('HGET', h, 'u') or '0')
  for _, id in ipairs(old) do
    local field = '#' .. id
    used = used - tonumber(redis.call('HGET', h, field) or '0')
    redis.call('HDEL', h, field)
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', edge)
  if redis.call('ZCARD', z) == 0 or used < 0 then
    used = 0
  end
  redis.call('HSET', h, 'u', used)
  return used
end

local function keep(h, z, window)
  local ttl = window
  local blocked = tonumber(redis.call('HGET', h, 'b') or '0') - now
  if blocked > ttl then
    ttl = blocked
  end
  ttl = math.floor(ttl / 1000) + 1000
  redis.call('PEXPIRE', h, ttl)
  redis.call('PEXPIRE', z, ttl)
end

-- microseconds until `amount` fits; -1 when it never can
local function wait_for(h, z, used, limit, window, amount)
  if limit >= 0 and amount > limit then
    return -1
  end
  local blocked = tonumber(redis.call('HGET', h, 'b') or '0') - now
  if blocked < 0 then
    blocked = 0
  end
  if limit < 0 then
    return blocked
  end
  local excess = used + amount - limit
  if excess <= 0 then
    return blocked
  end
  local freed = 0
  local start = 0
  while true do
    local page = redis.call('ZRANGE', z, start, start + 99, 'WITHSCORES')
    if #page == 0 then
      break
    end
    for j = 1, #page, 2 do
      freed = freed + tonumber(redis.call('HGET', h, '#' .. page[j]) or '0')
      if freed >= excess then
        local wait = tonumber(page[j + 1]) + window - now
        if wait < blocked then
          return blocked
        end
        return wait
      end
    end
    start = start + 100
  end
  if window > blocked then
    return window
  end
  return blocked
end

if op == 'take' then
  -- ARGV: take, id, n, then per claim: limit (-1: the one learned), window, amount
  -- -> {1, used...} admitted, or {0, wait (-1: never), index of the claim}
  local id = ARGV[2]
  local n = tonumber(ARGV[3])
  if n > 0 and redis.call('ZSCORE', KEYS[2], id) then
    return {1} -- admitted already: a retry of a call whose answer was lost
  end
  local used, limits, windows, amounts = {}, {}, {}, {}
  local wait, worst = 0, 0
  for i = 1, n do
    local h, z = KEYS[2 * i - 1], KEYS[2 * i]
    local limit = tonumber(ARGV[3 * i + 1])
    local window = tonumber(ARGV[3 * i + 2])
    local amount = tonumber(ARGV[3 * i + 3])
    if limit < 0 then
      limit = tonumber(redis.call('HGET', h, 'l') or '-1')
    end
    used[i] = expire(h, z, window)
    limits[i], windows[i], amounts[i] = limit, window, amount
    local fits = (limit < 0 or (used[i] + amount <= limit))
      and tonumber(redis.call('HGET', h, 'b') or '0') <= now
    if not fits then
      local w = wait_for(h, z, used[i], limit, window, amount)
      if w < 0 then
        return {0, -1, i}
      end
      if w > wait then
        wait, worst = w, i
      end
    end
  end
  if wait > 0 then
    return {0, wait, worst}
  end
  local out = {1}
  for i = 1, n do
    local h, z = KEYS[2 * i - 1], KEYS[2 * i]
    redis.call('ZADD', z, now, id)
    redis.call('HSET', h, '#' .. id, amounts[i])
    out[i + 1] = redis.call('HINCRBY', h, 'u', amounts[i])
    if tonumber(ARGV[3 * i + 1]) >= 0 then
      redis.call('HSET', h, 'l', limits[i])
    end
    keep(h, z, windows[i])
  end
  return out
elseif op == 'correct' then
  -- ARGV: correct, id, n, then per bucket: window, the amount the admission holds now
  local id = ARGV[2]
  local n = tonumber(ARGV[3])
  for i = 1, n do
    local h, z = KEYS[2 * i - 1], KEYS[2 * i]
    local window = tonumber(ARGV[2 * i + 2])
    local amount = tonumber(ARGV[2 * i + 3])
    expire(h, z, window)
    if redis.call('ZSCORE', z, id) then
      local field = '#' .. id
      local old = tonumber(redis.call('HGET', h, field) or '0')
      redis.call('HINCRBY', h, 'u', amount - old)
      if amount > 0 then
        redis.call('HSET', h, field, amount)
      else
        redis.call('HDEL', h, field)
        redis.call('ZREM', z, id)
      end
      keep(h, z, window)
    end
  end
  return 1
elseif op == 'absorb' then
  -- what an instance admitted on its own while Redis was away, counted now at its
  -- age; an admission already here (its take had reached Redis) is skipped
  -- ARGV: absorb, n, then per entry: id, age, window, amount
  local n = tonumber(ARGV[2])
  local added = 0
  for i = 1, n do
    local h, z = KEYS[2 * i - 1], KEYS[2 * i]
    local id = ARGV[4 * i - 1]
    local age = tonumber(ARGV[4 * i])
    local window = tonumber(ARGV[4 * i + 1])
    local amount = tonumber(ARGV[4 * i + 2])
    expire(h, z, window)
    if age < window and amount > 0 and not redis.call('ZSCORE', z, id) then
      redis.call('ZADD', z, now - age, id)
      redis.call('HSET', h, '#' .. id, amount)
      redis.call('HINCRBY', h, 'u', amount)
      keep(h, z, window)
      added = added + 1
    end
  end
  return added
elseif op == 'block' then
  -- ARGV: block, for how long, window
  local h, z = KEYS[1], KEYS[2]
  local untill = now + tonumber(ARGV[2])
  local before = tonumber(redis.call('HGET', h, 'b') or '0')
  if untill > before then
    redis.call('HSET', h, 'b', untill)
  end
  keep(h, z, tonumber(ARGV[3]))
  return 1
elseif op == 'observe' then
  -- a provider reported `remaining` of `limit` until `reset` from now: the window
  -- holds limit - remaining, all freed at the reset
  -- ARGV: observe, limit, remaining, reset, window
  local h, z = KEYS[1], KEYS[2]
  local limit = tonumber(ARGV[2])
  local remaining = tonumber(ARGV[3])
  local reset = tonumber(ARGV[4])
  local window = tonumber(ARGV[5])
  local blocked = redis.call('HGET', h, 'b')
  redis.call('DEL', h, z)
  redis.call('HSET', h, 'l', limit, 'u', 0)
  if blocked then
    redis.call('HSET', h, 'b', blocked)
  end
  local held = limit - remaining
  if held > 0 then
    if reset < 0 then
      reset = 0
    end
    if reset > window then
      reset = window
    end
    redis.call('ZADD', z, now - window + reset, 'observed')
    redis.call('HSET', h, '#observed', held, 'u', held)
  end
  keep(h, z, window)
  return 1
end
return redis.error_reply('llmkernel.ratelimit: unknown operation ' .. tostring(op))
