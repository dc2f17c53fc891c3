-- Qianmian cap rules for one cardholder, run atomically inside Redis.
-- Mirrors recsys/caps/rules.py exactly (the tests compare both on random histories).
-- The engine prepends `local P = {...}` (the compiled policy) to this file.
--
-- KEYS[1]  the cardholder's hash, e.g. "{qm:u:123}"
-- ARGV[1]  operation: d (decide, maybe reserve), c (confirm), r (release), u (undo a fresh
--          reservation), o (open), m (mute), M (unmute), x (opt out), X (opt in)
-- ARGV[2]  now, epoch ms (the caller's clock, never Redis TIME)
-- decide:  ARGV[3] reserve 0/1, [4] push id, [5..8] local day start/end and month start/end (ms,
--          computed in Python for the cardholder's zone), [9] quiet-hours end or 0, [10] number of
--          candidates, then 6 per candidate: content, kind, tags (|-joined), transactional 0/1,
--          campaign exhausted 0/1, campaign
-- confirm/release/undo: ARGV[3] push id
--
-- Hash fields: o opted-out ms, m muted ms, u unopened streak, l last sent ms,
-- P push records "pid US status US ts US expires US tx US content US kind US tags US campaign"
-- joined by RS (status r reserved, c confirmed, x released), c:<content> last confirmed ms.

local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local RS, US = '\30', '\31'

local function split(s, sep)
  local out, start = {}, 1
  while true do
    local i = string.find(s, sep, start, true)
    if not i then
      out[#out + 1] = string.sub(s, start)
      return out
    end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end

local function parse(packed)
  local recs = {}
  if not packed or packed == '' then return recs end
  for _, item in ipairs(split(packed, RS)) do
    local f = split(item, US)
    recs[#recs + 1] = {pid = f[1], st = f[2], ts = tonumber(f[3]), exp = tonumber(f[4]), tx = f[5],
      content = f[6], kind = f[7], tags = f[8], campaign = f[9]}
  end
  return recs
end

local function pack(recs)
  local parts = {}
  for i, r in ipairs(recs) do
    parts[i] = table.concat({r.pid, r.st, string.format('%d', r.ts), string.format('%d', r.exp), r.tx,
      r.content, r.kind, r.tags, r.campaign}, US)
  end
  return table.concat(parts, RS)
end

local function visible(r)
  if r.st == 'c' then return r.ts > now - P.horizon end
  return now < r.exp
end

-- Drops invisible records; returns the kept list and whether anything was dropped.
local function purge(recs)
  local kept, dropped = {}, false
  for _, r in ipairs(recs) do
    if visible(r) then kept[#kept + 1] = r else dropped = true end
  end
  return kept, dropped
end

local function save_recs(recs)
  if #recs == 0 then redis.call('HDEL', key, 'P') else redis.call('HSET', key, 'P', pack(recs)) end
end

-- Opted-out or forever-muted cardholders must never be forgotten; others expire when idle.
local function touch()
  local o, m = unpack(redis.call('HMGET', key, 'o', 'm'))
  if o or (m and P.mute_pause < 0) then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, P.retention)
  end
end

local function tagset(tags)
  local set = {}
  if tags ~= '' then
    for _, t in ipairs(split(tags, '|')) do set[t] = true end
  end
  return set
end

local function matches(limit, kind, tags)
  if limit.kinds and not limit.kinds[kind] then return false end
  if limit.tags then
    for t in pairs(tags) do
      if limit.tags[t] then return true end
    end
    return false
  end
  return true
end

if op == 'd' then
  local reserve = ARGV[3] == '1'
  local push_id = ARGV[4]
  local day_s, day_e = tonumber(ARGV[5]), tonumber(ARGV[6])
  local mon_s, mon_e = tonumber(ARGV[7]), tonumber(ARGV[8])
  local quiet = tonumber(ARGV[9])
  local n = tonumber(ARGV[10])
  local fields = {'o', 'm', 'u', 'l', 'P'}
  for i = 1, n do fields[5 + i] = 'c:' .. ARGV[10 + (i - 1) * 6 + 1] end
  local vals = redis.call('HMGET', key, unpack(fields))
  local opted, muted = tonumber(vals[1]), tonumber(vals[2])
  local unopened, last_sent = tonumber(vals[3]) or 0, tonumber(vals[4])
  local recs = parse(vals[5])
  local dirty = false
  if reserve then recs, dirty = purge(recs) end

  local counting = {}
  for _, r in ipairs(recs) do
    if r.st ~= 'x' and visible(r) and (r.tx == '0' or P.tx_counts) then
      counting[#counting + 1] = r
      if P.any_tag_filter then r.tagset = tagset(r.tags) end
    end
  end

  local user_blocks = {}
  local function add(list, rule, eligible, a, b)
    list[#list + 1] = {rule, eligible, a, b}
  end
  if opted then add(user_blocks, 'opt_out', -1, opted, -1) end
  if muted then
    if P.mute_pause < 0 then
      add(user_blocks, 'muted', -1, muted, -1)
    elseif now < muted + P.mute_pause then
      add(user_blocks, 'muted', muted + P.mute_pause, muted, -1)
    end
  end
  if quiet > 0 then add(user_blocks, 'quiet_hours', quiet, -1, -1) end

  local limit_blocks = {}
  for li, limit in ipairs(P.limits) do
    local low, high
    if limit.window == 1 then low, high = day_s, day_e
    elseif limit.window == 2 then low, high = mon_s, mon_e
    else low = now - limit.dur end
    local times = {}
    for _, r in ipairs(counting) do
      if not limit.filtered or matches(limit, r.kind, r.tagset or {}) then
        if high then
          if r.ts >= low and r.ts < high then times[#times + 1] = r.ts end
        elseif r.ts > low then
          times[#times + 1] = r.ts
        end
      end
    end
    if #times >= limit.max then
      local eligible
      if limit.window == 1 then eligible = day_e
      elseif limit.window == 2 then eligible = mon_e
      else
        table.sort(times)
        eligible = times[#times - limit.max + 1] + limit.dur
      end
      limit_blocks[li] = {'limit:' .. limit.name, eligible, #times, limit.max}
    end
  end

  local tail_blocks = {}
  if P.min_gap > 0 and #counting > 0 then
    local last = counting[1].ts
    for _, r in ipairs(counting) do
      if r.ts > last then last = r.ts end
    end
    if now < last + P.min_gap then add(tail_blocks, 'min_gap', last + P.min_gap, last, -1) end
  end
  if P.fatigue_n > 0 and unopened >= P.fatigue_n and last_sent and now < last_sent + P.fatigue_pause then
    add(tail_blocks, 'fatigue', last_sent + P.fatigue_pause, unopened, last_sent)
  end

  local out = {}
  local chosen = nil
  local cand_blocks = {}
  for i = 1, n do
    local base = 10 + (i - 1) * 6
    local content, kind, tags = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
    local tx, throttled = ARGV[base + 4], ARGV[base + 5]
    local blocks = {}
    if tx == '0' then
      for _, b in ipairs(user_blocks) do blocks[#blocks + 1] = b end
      local ctags = nil
      for li, limit in ipairs(P.limits) do
        local b = limit_blocks[li]
        if b then
          if not limit.filtered then
            blocks[#blocks + 1] = b
          else
            ctags = ctags or tagset(tags)
            if matches(limit, kind, ctags) then blocks[#blocks + 1] = b end
          end
        end
      end
      for _, b in ipairs(tail_blocks) do blocks[#blocks + 1] = b end
      if P.no_repeat then
        local last = tonumber(vals[5 + i])
        for _, r in ipairs(recs) do
          if r.st == 'r' and r.content == content and r.tx == '0' and now < r.exp and (not last or r.ts > last) then
            last = r.ts
          end
        end
        if last then
          if P.no_repeat_window < 0 then
            blocks[#blocks + 1] = {'no_repeat', -1, last, -1}
          elseif last > now - P.no_repeat_window then
            blocks[#blocks + 1] = {'no_repeat', last + P.no_repeat_window, last, -1}
          end
        end
      end
    end
    if not chosen and #blocks == 0 and throttled == '0' then chosen = i end
    cand_blocks[i] = blocks
  end

  -- Reservation: out[1] = 0 none, 1 new, 2 replay of a known push id; then pid, content, ts, exp, status.
  local res = {0, '', '', 0, 0, ''}
  if reserve then
    local existing = nil
    for _, r in ipairs(recs) do
      if r.pid == push_id then existing = r end
    end
    if existing then
      res = {2, existing.pid, existing.content, existing.ts, existing.exp, existing.st}
    elseif chosen then
      local base = 10 + (chosen - 1) * 6
      local rec = {pid = push_id, st = 'r', ts = now, exp = now + P.ttl, tx = ARGV[base + 4],
        content = ARGV[base + 1], kind = ARGV[base + 2], tags = ARGV[base + 3], campaign = ARGV[base + 6]}
      recs[#recs + 1] = rec
      dirty = true
      res = {1, push_id, rec.content, rec.ts, rec.exp, 'r'}
    end
    if dirty then
      save_recs(recs)
      touch()
    end
  end
  for _, v in ipairs(res) do out[#out + 1] = v end
  for i = 1, n do
    local blocks = cand_blocks[i]
    out[#out + 1] = #blocks
    for _, b in ipairs(blocks) do
      out[#out + 1] = b[1]; out[#out + 1] = b[2]; out[#out + 1] = b[3]; out[#out + 1] = b[4]
    end
  end
  return out
end

if op == 'c' or op == 'r' or op == 'u' then
  local push_id = ARGV[3]
  local vals = redis.call('HMGET', key, 'P', 'u', 'l')
  if not vals[1] then return 'not_found' end
  local recs, dirty = purge(parse(vals[1]))
  local found, index = nil, nil
  for i, r in ipairs(recs) do
    if r.pid == push_id then found, index = r, i end
  end
  local status
  if not found then
    status = 'not_found'
  elseif op == 'u' then
    if found.st == 'r' then
      table.remove(recs, index)
      dirty = true
      status = 'released'
    else
      status = 'already_confirmed'
    end
  elseif found.st == 'c' then
    status = 'already_confirmed'
  elseif found.st == 'x' then
    status = 'already_released'
  elseif op == 'r' then
    found.st = 'x'
    dirty = true
    status = 'released'
  else
    found.st = 'c'
    dirty = true
    status = 'confirmed'
    if found.tx == '0' then
      local last = tonumber(vals[3])
      if not last or found.ts > last then last = found.ts end
      local field = 'c:' .. found.content
      local prev = tonumber(redis.call('HGET', key, field))
      if not prev or found.ts > prev then prev = found.ts end
      redis.call('HSET', key, 'u', (tonumber(vals[2]) or 0) + 1, 'l', string.format('%d', last),
        field, string.format('%d', prev))
    end
  end
  if dirty then
    save_recs(recs)
    touch()
  end
  return status
end

-- Reactions: purge stale records, then update the cardholder's flags.
local packed = redis.call('HGET', key, 'P')
if packed then
  local recs, dropped = purge(parse(packed))
  if dropped then save_recs(recs) end
end
local stamp = string.format('%d', now)
if op == 'o' then
  redis.call('HSET', key, 'u', 0)
elseif op == 'm' then
  redis.call('HSET', key, 'm', stamp)
elseif op == 'M' then
  redis.call('HDEL', key, 'm')
elseif op == 'x' then
  redis.call('HSETNX', key, 'o', stamp)
elseif op == 'X' then
  redis.call('HDEL', key, 'o')
else
  return redis.error_reply('unknown cap operation ' .. tostring(op))
end
if redis.call('EXISTS', key) == 1 then touch() end
return 'ok'
