-- Qianmian cap rules for one cardholder, run atomically inside Redis.
-- Mirrors recsys/caps/rules.py exactly (the tests compare both on random histories).
-- The engine inlines the policy: every `P.<setting>` becomes a literal (see compile_policy).
--
-- KEYS[1]  the cardholder's hash, e.g. "{qm:u:123}"
-- ARGV[1]  operation: d (decide, maybe reserve), c (confirm), r (release), u (undo a fresh
--          reservation), o (open), m (mute), M (unmute), x (opt out), X (opt in)
-- ARGV[2]  now, epoch ms (the caller's clock, never Redis TIME)
-- decide:  ARGV[3] reserve 0/1, [4] push id, [5..8] local day start/end and
--          month start/end (ms, computed in Python for the cardholder's zone), [9] quiet-hours end
--          or 0, [10] number n of candidates, [11..10+n] each candidate's field "c:<content id>",
--          [11+n..10+2n] each candidate's code (bitmask of the limits that apply to it * 4 +
--          transactional * 2 + campaign throttled), [11+2n] each candidate's record tail
--          `tx US content US kind US tags US campaign` (US = \31; tags as `|t1|t2|`, "" for
--          none), joined by RS (\30)
-- The engine replaces the LIMITS marker with code generated for the policy's limits.
-- confirm/release/undo: ARGV[3] push id, ARGV[4] (confirm) the sent push's record tail, or ""
-- open: ARGV[3] the opened push id, or "" (any open resets the streak)
-- KEYS[2]  (optional, not for decide) the event's marker key: the operation runs only when the
--          marker is absent, and sets it (to the result, expiring after the last ARGV, in ms) in
--          the same atomic step, so one event is applied exactly once ('duplicate' otherwise).
--
-- Hash fields: o opted-out ms, m muted ms, u unopened streak, l last sent ms, c:<content> last
-- confirmed ms, S the latest marketing sends (setting `outcomes`), oldest first: each RS then push id,
-- sent ms (the confirm's now) and opened 0/1 joined by US; P the push records: each record is RS (\30)
-- followed by its fields joined by US (\31):
-- push id, status (r reserved, c confirmed, x released), ts, expires, tx 0/1, content, kind,
-- tags (`|t1|t2|`, "" for none), campaign ("" for none). Ids never contain RS or US (checked by
-- the engine).

local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local PID, ST, TS, EXP, TX, CONTENT, KIND, TAGS = 1, 2, 3, 4, 5, 6, 7, 8

local RECORD = '\30([^\30\31]*)\31(%a)\31(%d+)\31(%d+)\31([01])\31([^\30\31]*)\31([^\30\31]*)'
  .. '\31([^\30\31]*)\31([^\30\31]*)'

-- Records as tables.
local function parse(packed)
  if not packed or packed == '' then return {} end
  local recs = {}
  local n = 0
  for pid, st, ts, exp, tx, content, kind, tags, campaign in string.gmatch(packed, RECORD) do
    n = n + 1
    recs[n] = {pid, st, tonumber(ts), tonumber(exp), tx, content, kind, tags, campaign}
  end
  return recs
end

local function encode(recs)
  local parts = {}
  for i, r in ipairs(recs) do
    parts[i] = r[PID] .. '\31' .. r[ST] .. '\31' .. string.format('%d', r[TS]) .. '\31'
      .. string.format('%d', r[EXP]) .. '\31' .. r[TX] .. '\31' .. r[CONTENT] .. '\31' .. r[KIND]
      .. '\31' .. r[TAGS] .. '\31' .. r[9]
  end
  return '\30' .. table.concat(parts, '\30')
end

-- A count-prefixed run of (rule, eligible, a, b) blocks, as the engine's reply reader expects.
local function append_blocks(out, k, blocks)
  out[k + 1] = #blocks
  k = k + 1
  for _, b in ipairs(blocks) do
    out[k + 1], out[k + 2], out[k + 3], out[k + 4] = b[1], b[2], b[3], b[4]
    k = k + 4
  end
  return k
end

local function visible(r)
  if r[ST] == 'c' then return r[TS] > now - P.horizon end
  return now < r[EXP]
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
  if #recs == 0 then redis.call('HDEL', key, 'P') else redis.call('HSET', key, 'P', encode(recs)) end
end

-- Opted-out or forever-muted cardholders must never be forgotten; others expire when idle.
local function touch(o, m)
  if o == nil then o, m = unpack(redis.call('HMGET', key, 'o', 'm')) end
  if o or (m and P.mute_pause < 0) then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, P.retention)
  end
end

if op == 'd' then
  local reserve = ARGV[3] == '1'
  local day_s, day_e = tonumber(ARGV[5]), tonumber(ARGV[6])
  local mon_s, mon_e = tonumber(ARGV[7]), tonumber(ARGV[8])
  local quiet = tonumber(ARGV[9])
  local n = tonumber(ARGV[10])
  local vals = redis.call('HMGET', key, 'o', 'm', 'u', 'l', 'P', unpack(ARGV, 11, 10 + n))
  local opted, muted = tonumber(vals[1]), tonumber(vals[2])
  local unopened, last_sent = tonumber(vals[3]) or 0, tonumber(vals[4])
  local packed = vals[5]
  local recs = parse(packed)
  local dirty = false
  if reserve then
    recs, dirty = purge(recs)
  end

  local counting, pending = {}, false
  for _, r in ipairs(recs) do
    if r[ST] ~= 'x' and visible(r) and (r[TX] == '0' or P.tx_counts) then counting[#counting + 1] = r end
    if r[ST] == 'r' then pending = true end
  end

  -- Rules that do not depend on the candidate, then each limit; the caller assembles each
  -- candidate's blocks from these (same order as rules.evaluate).
  local user_blocks = {}
  if opted then user_blocks[#user_blocks + 1] = {'opt_out', -1, opted, -1} end
  if muted then
    if P.mute_pause < 0 then
      user_blocks[#user_blocks + 1] = {'muted', -1, muted, -1}
    elseif now < muted + P.mute_pause then
      user_blocks[#user_blocks + 1] = {'muted', muted + P.mute_pause, muted, -1}
    end
  end
  if quiet > 0 then user_blocks[#user_blocks + 1] = {'quiet_hours', quiet, -1, -1} end

  local limit_out, blocked_mask = {}, 0
  --@LIMITS@
  local tail_blocks = {}
  if P.min_gap > 0 and #counting > 0 then
    local last = counting[1][TS]
    for _, r in ipairs(counting) do
      if r[TS] > last then last = r[TS] end
    end
    if now < last + P.min_gap then tail_blocks[#tail_blocks + 1] = {'min_gap', last + P.min_gap, last, -1} end
  end
  if P.fatigue_n > 0 and unopened >= P.fatigue_n and last_sent and now < last_sent + P.fatigue_pause then
    tail_blocks[#tail_blocks + 1] = {'fatigue', last_sent + P.fatigue_pause, unopened, last_sent}
  end
  local person_blocked = #user_blocks > 0 or #tail_blocks > 0

  local repeats, chosen = {}, nil
  for i = 1, n do
    local code = tonumber(ARGV[10 + n + i])
    local tx, throttled = code % 4 >= 2, code % 2 == 1
    local last = -1
    if not tx and P.no_repeat then
      local sent = tonumber(vals[5 + i])
      if pending then
        local content = string.sub(ARGV[10 + i], 3)
        for _, r in ipairs(recs) do
          if r[ST] == 'r' and r[CONTENT] == content and r[TX] == '0' and now < r[EXP] and (not sent or r[TS] > sent) then
            sent = r[TS]
          end
        end
      end
      if sent and (P.no_repeat_window < 0 or sent > now - P.no_repeat_window) then last = sent end
    end
    repeats[i] = last
    if not chosen and not throttled then
      if tx then
        chosen = i
      elseif not person_blocked and last == -1 and bit.band(blocked_mask, math.floor(code / 4)) == 0 then
        chosen = i
      end
    end
  end

  -- Reply (packed with cmsgpack): out[1] = 0 no reservation, or 1 new, 2 replay of a known push id followed by pid,
  -- content, ts, exp, status, index of the reserved candidate; then the number of cardholder
  -- blocks and each as rule, eligible, a, b; the mask of full limits and each full limit's
  -- eligible time and count; the number of tail blocks and each; each candidate's no-repeat time.
  local out = {0}
  if reserve then
    local push_id = ARGV[4]
    local existing = nil
    for _, r in ipairs(recs) do
      if r[PID] == push_id then existing = r end
    end
    if existing then
      out = {2, existing[PID], existing[CONTENT], existing[TS], existing[EXP], existing[ST], 0}
    elseif chosen then
      local tails, start = ARGV[11 + 2 * n], 1
      for _ = 2, chosen do start = string.find(tails, '\30', start, true) + 1 end
      local stop = string.find(tails, '\30', start, true)
      local tail = string.sub(tails, start, stop and stop - 1 or -1)
      local rec = '\30' .. push_id .. '\31r\31' .. string.format('%d', now) .. '\31'
        .. string.format('%d', now + P.ttl) .. '\31' .. tail
      if dirty then packed = #recs > 0 and encode(recs) or nil end
      packed = (packed or '') .. rec
      redis.call('HSET', key, 'P', packed)
      touch(opted or false, muted or false)
      dirty = false
      out = {1, push_id, string.sub(ARGV[10 + chosen], 3), now, now + P.ttl, 'r', chosen}
    end
    if dirty then
      save_recs(recs)
      touch(opted or false, muted or false)
    end
  end
  local k = #out
  k = append_blocks(out, k, user_blocks)
  out[k + 1] = blocked_mask
  k = k + 1
  for _, v in ipairs(limit_out) do
    k = k + 1
    out[k] = v
  end
  k = append_blocks(out, k, tail_blocks)
  for i = 1, n do out[k + i] = repeats[i] end
  -- one msgpack string instead of a nested reply: the engine decodes it in one C call
  return cmsgpack.pack(out)
end

local marker = KEYS[2]
if marker and redis.call('EXISTS', marker) == 1 then return 'duplicate' end

local function done(status)
  if marker then redis.call('SET', marker, status, 'PX', ARGV[#ARGV]) end
  return status
end

if op == 'c' or op == 'r' or op == 'u' then
  local push_id, sent = ARGV[3], ARGV[4] or ''
  local vals = redis.call('HMGET', key, 'P', 'u', 'l', 'S')
  local recs, dirty = purge(parse(vals[1]))
  local found, index = nil, nil
  for i, r in ipairs(recs) do
    if r[PID] == push_id then found, index = r, i end
  end
  local status, sending = nil, false
  if not found then
    if op == 'c' and sent ~= '' then
      -- Sent with no pending reservation (TTL passed): it happened, so it counts, at `now`.
      local tx, content, kind, tags, campaign = string.match(sent,
        '^([01])\31([^\30\31]*)\31([^\30\31]*)\31([^\30\31]*)\31([^\30\31]*)$')
      found = {push_id, 'r', now, now, tx, content, kind, tags, campaign}
      recs[#recs + 1] = found
      status, sending = 'recorded', true
    else
      status = 'not_found'
    end
  elseif op == 'u' then
    if found[ST] == 'r' then
      table.remove(recs, index)
      dirty = true
      status = 'released'
    else
      status = 'already_confirmed'
    end
  elseif found[ST] == 'c' then
    status = 'already_confirmed'
  elseif found[ST] == 'x' then
    status = 'already_released'
  elseif op == 'r' then
    found[ST] = 'x'
    dirty = true
    status = 'released'
  else
    status, sending = 'confirmed', true
  end
  if sending then
    found[ST] = 'c'
    dirty = true
    if found[TX] == '0' then
      local last = tonumber(vals[3])
      if not last or found[TS] > last then last = found[TS] end
      local field = 'c:' .. found[CONTENT]
      local prev = tonumber(redis.call('HGET', key, field))
      if not prev or found[TS] > prev then prev = found[TS] end
      local kept = {}
      for entry in string.gmatch(vals[4] or '', '\30([^\30]*)') do kept[#kept + 1] = entry end
      kept[#kept + 1] = push_id .. '\31' .. string.format('%d', now) .. '\31' .. '0'
      local first = math.max(1, #kept - P.outcomes + 1)
      redis.call('HSET', key, 'u', (tonumber(vals[2]) or 0) + 1, 'l', string.format('%d', last),
        field, string.format('%d', prev), 'S', '\30' .. table.concat(kept, '\30', first))
    end
  end
  if dirty then
    save_recs(recs)
    touch()
  end
  return done(status)
end

-- Reactions: purge stale records, then update the cardholder's flags.
local recs = {}
local packed = redis.call('HGET', key, 'P')
if packed then
  local kept, dropped = purge(parse(packed))
  recs = kept
  if dropped then save_recs(recs) end
end
local stamp = string.format('%d', now)
local status = 'ok'
if op == 'o' then
  -- Only an open of a push the cardholder's state knows (reserved or sent) resets the streak.
  local pid = ARGV[3] or ''
  local known = pid == ''
  for _, r in ipairs(recs) do
    if r[PID] == pid and r[ST] ~= 'x' then known = true end
  end
  if known then
    redis.call('HSET', key, 'u', 0)
    local outcomes = pid ~= '' and redis.call('HGET', key, 'S')
    if outcomes then
      local kept, changed = {}, false
      for entry in string.gmatch(outcomes, '\30([^\30]*)') do
        local id, sent, opened = string.match(entry, '^([^\31]*)\31(%d+)\31([01])$')
        if id == pid and opened == '0' then entry, changed = id .. '\31' .. sent .. '\31' .. '1', true end
        kept[#kept + 1] = entry
      end
      if changed then redis.call('HSET', key, 'S', '\30' .. table.concat(kept, '\30')) end
    end
  else
    status = 'unknown_push'
  end
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
return done(status)
