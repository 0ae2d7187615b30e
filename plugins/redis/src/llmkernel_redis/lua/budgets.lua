-- llmkernel.budgets v1
-- Budget counters in integer micro-dollars (key layout bud1). Per counter (one
-- limit's running total for one period): a hash C (spent; held: the sum of live
-- reservations; "src:<ledger>": what each ledger accounts for; "#<id>": one
-- reservation's amount) and a sorted set R (<id> scored by its expiry). A slab
-- lease is a reservation named "lease:<owner>" whose amount the owner changes.
-- Expired reservations (a crashed instance's) are dropped by every operation that
-- touches their counter. Time is Redis's TIME; every key written gets a TTL.
-- ARGV[1]: the operation: reserve, settle, lease, renew, reseed, read.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]

local function purge(c, r)
  local gone = redis.call('ZRANGEBYSCORE', r, '-inf', now)
  if #gone == 0 then
    return
  end
  local held = tonumber(redis.call('HGET', c, 'held') or '0')
  for _, id in ipairs(gone) do
    local field = '#' .. id
    held = held - tonumber(redis.call('HGET', c, field) or '0')
    redis.call('HDEL', c, field)
  end
  redis.call('ZREMRANGEBYSCORE', r, '-inf', now)
  if held < 0 or redis.call('ZCARD', r) == 0 then
    held = 0
  end
  redis.call('HSET', c, 'held', held)
end

local function num(c, field)
  return tonumber(redis.call('HGET', c, field) or '0')
end

local function keep(c, r, ttl)
  -- the counter lives ttl seconds after its last write, and at least as long as
  -- its latest reservation
  local last = redis.call('ZRANGE', r, -1, -1, 'WITHSCORES')
  local ms = ttl * 1000
  if #last > 0 then
    local until_ms = math.floor((tonumber(last[2]) - now) / 1000) + 1000
    if until_ms > ms then
      ms = until_ms
    end
  end
  redis.call('PEXPIRE', c, ms)
  if #last > 0 then
    redis.call('PEXPIRE', r, ms)
  end
end

-- set reservation `id` of counter (c, r) to `amount`, live until `expiry`
local function hold(c, r, id, amount, expiry)
  local field = '#' .. id
  local before = 0
  if redis.call('ZSCORE', r, id) then
    before = num(c, field)
  end
  redis.call('HINCRBY', c, 'held', amount - before)
  if amount > 0 then
    redis.call('HSET', c, field, amount)
    redis.call('ZADD', r, expiry, id)
  else
    redis.call('HDEL', c, field)
    redis.call('ZREM', r, id)
  end
end

if op == 'reserve' then
  -- ARGV: reserve, id, ttl (us), n, then per counter: limit, amount, key ttl (s)
  -- KEYS: C1, R1, C2, R2...  -> {1} reserved (or already), {0, i, spent, held}
  local id = ARGV[2]
  local expiry = now + tonumber(ARGV[3])
  local n = tonumber(ARGV[4])
  if n > 0 and redis.call('ZSCORE', KEYS[2], id) then
    return {1}
  end
  for i = 1, n do
    local c, r = KEYS[2 * i - 1], KEYS[2 * i]
    purge(c, r)
    local limit, amount = tonumber(ARGV[3 * i + 2]), tonumber(ARGV[3 * i + 3])
    local spent, held = num(c, 'spent'), num(c, 'held')
    if spent + held + amount > limit then
      return {0, i, spent, held}
    end
  end
  for i = 1, n do
    local c, r = KEYS[2 * i - 1], KEYS[2 * i]
    hold(c, r, id, tonumber(ARGV[3 * i + 3]), expiry)
    keep(c, r, tonumber(ARGV[3 * i + 4]))
  end
  return {1}
elseif op == 'settle' then
  -- ARGV: settle, id, ledger, lease ('' for none), marker ttl (s), n, then per
  -- counter: actual cost, lease share (what of it the lease covered), key ttl (s)
  -- KEYS: marker, C1, R1, C2, R2...  -> 1 settled now, 0 settled before
  local id, source, lease = ARGV[2], ARGV[3], ARGV[4]
  local n = tonumber(ARGV[6])
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
  end
  for i = 1, n do
    local c, r = KEYS[2 * i], KEYS[2 * i + 1]
    purge(c, r)
    local actual = tonumber(ARGV[3 * i + 4])
    local share = tonumber(ARGV[3 * i + 5])
    if redis.call('ZSCORE', r, id) then
      hold(c, r, id, 0, 0)
    end
    if lease ~= '' and share > 0 then
      local expiry = redis.call('ZSCORE', r, lease)
      if expiry then
        local left = num(c, '#' .. lease) - share
        if left < 0 then
          left = 0
        end
        hold(c, r, lease, left, tonumber(expiry))
      end
    end
    if actual > 0 then
      redis.call('HINCRBY', c, 'spent', actual)
      redis.call('HINCRBY', c, 'src:' .. source, actual)
    end
    keep(c, r, tonumber(ARGV[3 * i + 6]))
  end
  redis.call('SET', KEYS[1], '1', 'EX', tonumber(ARGV[5]))
  return 1
elseif op == 'lease' then
  -- the slab path (as the budgets plugin's SQLite reserve_slow): per counter,
  -- lease `need` (what this owner has in flight or pending) + this call + a slab
  -- when the room allows two slabs, else keep `need` leased and reserve this call
  -- exactly under `id`; all counters or none.
  -- ARGV: lease, owner lease id, call id, lease ttl (us), reservation ttl (us),
  -- worst, slab size, n, then per counter: limit, need, key ttl (s)
  -- KEYS: C1, R1...  -> {1, granted1, exact1, ...} or {0, i, spent, reserved}
  local lease, id = ARGV[2], ARGV[3]
  local lease_until = now + tonumber(ARGV[4])
  local call_until = now + tonumber(ARGV[5])
  local worst, size = tonumber(ARGV[6]), tonumber(ARGV[7])
  local n = tonumber(ARGV[8])
  local rooms = {}
  for i = 1, n do
    local c, r = KEYS[2 * i - 1], KEYS[2 * i]
    purge(c, r)
    local limit, need = tonumber(ARGV[3 * i + 6]), tonumber(ARGV[3 * i + 7])
    local mine = 0
    if redis.call('ZSCORE', r, lease) then
      mine = num(c, '#' .. lease)
    end
    local spent = num(c, 'spent')
    local others = num(c, 'held') - mine
    if spent + others + need + worst > limit then
      return {0, i, spent, others + need}
    end
    rooms[i] = limit - spent - others - need
  end
  local out = {1}
  for i = 1, n do
    local c, r = KEYS[2 * i - 1], KEYS[2 * i]
    local need = tonumber(ARGV[3 * i + 7])
    local granted, exact = need, 1
    if size > 0 and rooms[i] >= 2 * size then
      granted, exact = need + worst + size, 0
    else
      hold(c, r, id, worst, call_until)
    end
    hold(c, r, lease, granted, lease_until)
    keep(c, r, tonumber(ARGV[3 * i + 8]))
    out[2 * i] = granted
    out[2 * i + 1] = exact
  end
  return out
elseif op == 'renew' then
  -- ARGV: renew, lease id, lease ttl (us), n, then per counter: amount (-1: as it
  -- is), key ttl (s)  -> per counter the lease's amount now (0: it had expired)
  local lease = ARGV[2]
  local lease_until = now + tonumber(ARGV[3])
  local n = tonumber(ARGV[4])
  local out = {}
  for i = 1, n do
    local c, r = KEYS[2 * i - 1], KEYS[2 * i]
    purge(c, r)
    local amount = tonumber(ARGV[2 * i + 3])
    local live = redis.call('ZSCORE', r, lease)
    if amount < 0 then
      amount = 0
      if live then
        amount = num(c, '#' .. lease)
      end
    end
    hold(c, r, lease, amount, lease_until)
    keep(c, r, tonumber(ARGV[2 * i + 4]))
    out[i] = amount
  end
  return out
elseif op == 'reseed' then
  -- the spend a ledger records, where Redis holds less (a restarted or emptied
  -- Redis): never lowers a counter
  -- ARGV: reseed, ledger, n, then per counter: the ledger's total, key ttl (s)
  -- -> per counter the spend now
  local source = ARGV[2]
  local n = tonumber(ARGV[3])
  local out = {}
  for i = 1, n do
    local c, r = KEYS[2 * i - 1], KEYS[2 * i]
    local total = tonumber(ARGV[2 * i + 2])
    local field = 'src:' .. source
    local before = num(c, field)
    if total > before then
      redis.call('HINCRBY', c, field, total - before)
      redis.call('HINCRBY', c, 'spent', total - before)
      keep(c, r, tonumber(ARGV[2 * i + 3]))
    end
    out[i] = num(c, 'spent')
  end
  return out
elseif op == 'read' then
  -- KEYS: C1, R1...  -> per counter: spent, held, live reservations
  local out = {}
  for i = 1, #KEYS / 2 do
    local c, r = KEYS[2 * i - 1], KEYS[2 * i]
    purge(c, r)
    out[3 * i - 2] = num(c, 'spent')
    out[3 * i - 1] = num(c, 'held')
    out[3 * i] = redis.call('ZCARD', r)
  end
  return out
end
return redis.error_reply('llmkernel.budgets: unknown operation ' .. tostring(op))
