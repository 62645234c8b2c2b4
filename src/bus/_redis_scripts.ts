/**
 * The Lua scripts of the Redis engine. Each runs atomically on the server, so every step that
 * must be one (assign a seq, append, track the run, publish; decide an approval and publish
 * the decision; read a consistent snapshot; check-and-add a connection) is one script. See
 * `redis_engine.ts` for the key layout and the reasoning behind the epoch and retention
 * choices, and `_engine_rules.ts` for the rules the scripts share with the memory engine.
 *
 * @module
 */
/**
 * Helpers every generation script starts with (see {@link generationSource}).
 *
 * `GENERATION` is the token the script was written with. A generation's script is only ever put
 * in a server's script cache by the boot call that made the token (an EVAL of its source, right
 * where it runs), and the script cache is neither saved nor replicated (Redis 7), so a script
 * that runs with `GENERATION` runs on the very process the token was made for: a restart, a
 * restored snapshot, a promoted replica or another server behind a proxy never has it.
 *
 * `claim_slot()` checks the slot's generation marker (KEYS[1]), which makes every instance use
 * one generation per slot: it matches `GENERATION`, or it is missing and this script takes it,
 * or the caller asks to replace a marker (ARGV[2] `=<marker it saw>`, after finding that
 * generation missing here) and the marker is still what the caller saw. Otherwise the script
 * answers `STALEGEN <marker>`, and the caller tries that generation.
 *
 * The log is a stream of batches: an entry `<first seq>-<append ms>` holds the events appended
 * by one script call, with fields `n` (how many), `h` (their thread ids: one, when all share it,
 * else one per event, newline-separated) and `b` (their JSON, newline-separated; JSON never
 * holds a raw newline, and thread ids are UUIDs), the first event with the entry's seq and each
 * next one with the next seq. The same body goes out on pub/sub, so a batch costs one XADD of
 * four fields and one SPUBLISH whatever its size. (An entry `<seq>-0` is one event as an
 * earlier version wrote it, `t <ms> [h <thread id>] e <JSON>`.) Retention is exact per event:
 * the meta's `first` is the oldest seq still retained, and reads leave out what precedes it in
 * the oldest entry; entries wholly below it are trimmed.
 *
 * `ensure_epoch()` returns the log's epoch, seq and first retained seq. When the meta hash is
 * missing (deleted, expired, or lost with the data) it starts a new log: new epoch, seq 0, old
 * events and runs dropped. When the meta was written by another generation, the process behind
 * the log changed and the counter may have been rewound: it names a new epoch and keeps the seq
 * (never below the newest retained event).
 *
 * `retention_floor()` is the oldest `agent_started` seq of the active runs (nil when none):
 * retention drops nothing at or above it (`retentionFloor()` in `_engine_rules.ts`). `trim()`
 * applies both limits below the floor: events beyond the newest `count`, and those of entries
 * appended before `cutoff` (ms; entries are in seq order and their append times almost always
 * are too, so it looks at the oldest ones only). `oldest()` is the first retained seq (nil for
 * an empty log).
 *
 * `live_purges()` returns the purged thread ids still in effect, forgetting those whose events
 * are all gone and whose purge is older than `cutoff` (`purgeExpired()`).
 *
 * `now_ms()` is the server's clock (TIME), the one every instance shares for approvals;
 * `iso_time()` renders it as JavaScript's `toISOString()` does.
 *
 * `append(a, i)` is the one place events enter a log. It reads table `a` from index `i`: the
 * number R of run slots, then each slot's run id and thread id, then one tag per event
 * (`<kind><slot>`: kind `s` starts the run, `e` ends it and starts the retention age of its
 * approval records, none neither; slot k's ended marker is `KEYS[4 + 2k]` and its approvals
 * hash `KEYS[5 + 2k]`) or, with one slot, one string `=<kinds>` (a character per event: `s`,
 * `e` or `.`), and last the events' JSON, newline-separated. An event of a purged
 * thread is refused (code 2), one of an ended run (ended before, or earlier in the same batch)
 * too (code 0, with the run's terminal seq); every other event gets the next seq (code 1). Then,
 * once for the batch: one XADD, retention, the keys' lifetimes, and one SPUBLISH of
 * `<epoch> <first seq>\n<the appended events' JSON>`. Returns `{epoch, 1, first seq}` when every
 * event was appended, else `{epoch, 0, code, value, code, value, …}` (value: the seq, 0, or the
 * run's terminal seq).
 */
const PRELUDE = `
local MAX_MS = '18446744073709551615'

local function seq_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end

local function legacy(id)
  return string.sub(id, -2) == '-0'
end

local function entry_time(entry)
  if legacy(entry[1]) then return tonumber(entry[2][2]) end
  return tonumber(string.match(entry[1], '-(%d+)$'))
end

local function entry_last(entry)
  if legacy(entry[1]) then return seq_of(entry[1]) end
  return seq_of(entry[1]) + tonumber(entry[2][2]) - 1
end

local function thread_of(run_value)
  return string.sub(run_value, string.find(run_value, ':', 1, true) + 1)
end

local function claim_slot()
  local marker = redis.call('GET', KEYS[1])
  if marker == GENERATION then return nil end
  local claim = ARGV[2]
  if (claim == '' and not marker) or (claim ~= '' and (marker or '') == string.sub(claim, 2)) then
    redis.call('SET', KEYS[1], GENERATION)
    return nil
  end
  return redis.error_reply('STALEGEN ' .. (marker or ''))
end

local function ensure_epoch(meta, log, runs, candidate, ttl_ms)
  local m = redis.call('HMGET', meta, 'epoch', 'seq', 'server', 'first', 't0', 'x')
  local epoch, seq, first = m[1], tonumber(m[2]) or 0, tonumber(m[4]) or 0
  if epoch and m[3] == GENERATION then return epoch, seq, first, tonumber(m[5]), tonumber(m[6]) end
  -- A meta this generation did not stamp: this script may only name an epoch once it holds
  -- the slot (a generation's marker only ever moves from a missing or dead one, so a meta it
  -- stamped proves it still holds it).
  local stale = claim_slot()
  if stale then error(stale) end
  if epoch then
    local newest = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
    if newest and entry_last(newest) > seq then seq = entry_last(newest) end
  else
    redis.call('DEL', log, runs)
    seq, first = 0, 0
  end
  redis.call('HSET', meta, 'epoch', candidate, 'seq', seq, 'server', GENERATION, 'first', first)
  redis.call('HDEL', meta, 'x', 't0')
  redis.call('PEXPIRE', meta, ttl_ms)
  return candidate, seq, first, nil, nil
end

local function oldest(log, first)
  local entry = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
  if not entry then return nil end
  local s = seq_of(entry[1])
  if first > s then s = first end
  if s > entry_last(entry) then return nil end
  return s
end

local function retention_floor(runs)
  local floor = nil
  for _, value in ipairs(redis.call('HVALS', runs)) do
    local start = tonumber(string.match(value, '^(%d+)'))
    if floor == nil or start < floor then floor = start end
  end
  return floor
end

local function trim(meta, log, seq, first, limits)
  local keep = seq - limits.count + 1
  local scanned, batch, from, head = 0, 1, '-', nil
  while scanned < 100000 do
    local entries = redis.call('XRANGE', log, from, '+', 'COUNT', batch)
    if head == nil then head = entries[1] or false end
    if #entries == 0 then keep = math.max(keep, seq + 1) break end
    local stop = false
    for i = 1, #entries do
      if entry_time(entries[i]) >= limits.cutoff then
        keep = math.max(keep, seq_of(entries[i][1]))
        stop = true
        break
      end
      if limits.floor and entry_last(entries[i]) >= limits.floor then
        keep = math.max(keep, limits.floor)
        stop = true
        break
      end
    end
    if stop then break end
    keep = math.max(keep, entry_last(entries[#entries]) + 1)
    from = '(' .. entries[#entries][1]
    scanned = scanned + #entries
    batch = 64
  end
  if limits.floor and keep > limits.floor then keep = limits.floor end
  if keep > first then
    local at = redis.call('XREVRANGE', log, keep .. '-' .. MAX_MS, '-', 'COUNT', 1)[1]
    if at then
      if entry_last(at) < keep then
        redis.call('XTRIM', log, 'MINID', (seq_of(at[1]) + 1) .. '-0')
        head = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1] or false
      else
        redis.call('XTRIM', log, 'MINID', at[1])
        head = at
      end
    end
    first = keep
    redis.call('HSET', meta, 'first', first)
  end
  -- t0: the append time of the oldest entry, so that the next call sees there is nothing to do.
  if head then redis.call('HSET', meta, 't0', entry_time(head)) else redis.call('HDEL', meta, 't0') end
  return first
end

-- Whether trim() may drop anything: over the count, or the oldest entry older than cutoff
-- (or its time unknown).
local function trimmable(seq, first, t0, count, cutoff)
  return seq - count + 1 > first or not t0 or t0 < cutoff
end

local function entries_from(log, from)
  local at = redis.call('XREVRANGE', log, from .. '-' .. MAX_MS, '-', 'COUNT', 1)[1]
  if at and entry_last(at) >= from then
    return redis.call('XRANGE', log, at[1], '+')
  end
  return redis.call('XRANGE', log, from .. '-0', '+')
end

local function live_purges(purged, log, first, cutoff)
  local all = redis.call('HGETALL', purged)
  if #all == 0 then return all end
  local retained = oldest(log, first) or math.huge
  local live = {}
  for i = 1, #all, 2 do
    local seq, at = string.match(all[i + 1], '^(%d+):(%d+)$')
    if tonumber(seq) < retained and tonumber(at) < cutoff then
      redis.call('HDEL', purged, all[i])
    else
      live[#live + 1] = all[i]
    end
  end
  return live
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function iso_time(ms)
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(rem / 3600), math.floor((rem % 3600) / 60), rem % 60, ms - s * 1000)
end

local function append(a, i)
  local meta, log, runs, purged = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
  local now, count = tonumber(ARGV[4]), tonumber(ARGV[5])
  local retention_ms, meta_ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
  local epoch, seq, first, t0, x = ensure_epoch(meta, log, runs, ARGV[3], meta_ttl)
  local r = tonumber(a[i])
  local tags, body = i + 1 + 2 * r, a[#a]
  local n = #a - tags
  -- One slot: the kinds as one string, a character per event ('s', 'e' or '.').
  local kinds = n == 1 and string.byte(a[tags]) == 61 and a[tags] or nil
  if kinds then n = #kinds - 1 end
  local codes, values = {}, {}
  local first_new, taken, started, one_slot = seq + 1, 0, false, nil
  local ended_here = false
  if kinds then
    -- One run: its checks once, and a look only at the events that start or end it.
    local run, thread = a[i + 1], a[i + 2]
    local refused, value = nil, 0
    if redis.call('HEXISTS', purged, thread) == 1 then
      refused = 2
    else
      local end_seq = tonumber(redis.call('GET', KEYS[6]))
      if end_seq then refused, value = 0, end_seq end
    end
    if refused then
      for j = 1, n do codes[j], values[j] = refused, value end
    else
      taken, one_slot = n, 1
      local at = 2
      while true do
        local p = string.find(kinds, '[se]', at)
        if not p then break end
        local j = p - 1
        if string.byte(kinds, p) == 115 then -- 's'
          redis.call('HSETNX', runs, run, (seq + j) .. ':' .. thread)
          started = true
        else -- 'e': the run ends here; what follows it in the batch is refused
          redis.call('HDEL', runs, run)
          redis.call('SET', KEYS[6], seq + j, 'PX', retention_ms)
          redis.call('PEXPIRE', KEYS[7], retention_ms)
          ended_here = true
          taken = j
          for later = j + 1, n do codes[later], values[later] = 0, seq + j end
          break
        end
        at = p + 1
      end
      if taken < n then
        for j = 1, taken do codes[j], values[j] = 1, seq + j end
      end
      seq = seq + taken
    end
  else
    local hidden, ended = {}, {}
    for j = 1, n do
      local tag = a[tags + j - 1]
      local kind = string.sub(tag, 1, 1)
      local k
      if kind == 's' or kind == 'e' then k = tonumber(string.sub(tag, 2)) else k = tonumber(tag) end
      if hidden[k] == nil then hidden[k] = redis.call('HEXISTS', purged, a[i + 2 * k]) == 1 end
      if not hidden[k] and ended[k] == nil then
        ended[k] = tonumber(redis.call('GET', KEYS[4 + 2 * k])) or false
      end
      if hidden[k] then
        codes[j], values[j] = 2, 0
      elseif ended[k] then
        codes[j], values[j] = 0, ended[k]
      else
        seq = seq + 1
        taken = taken + 1
        codes[j], values[j] = 1, seq
        local run = a[i + 2 * k - 1]
        if kind == 's' then
          redis.call('HSETNX', runs, run, seq .. ':' .. a[i + 2 * k])
          started = true
        elseif kind == 'e' then
          redis.call('HDEL', runs, run)
          redis.call('SET', KEYS[4 + 2 * k], seq, 'PX', retention_ms)
          redis.call('PEXPIRE', KEYS[5 + 2 * k], retention_ms)
          ended[k] = seq
          ended_here = true
        end
        if one_slot == nil then one_slot = k elseif one_slot ~= k then one_slot = false end
      end
    end
  end
  if taken > 0 then
    local threads
    if one_slot then
      threads = a[i + 2 * one_slot]
    else
      threads = {}
      for j = 1, n do
        if codes[j] == 1 then
          local tag = a[tags + j - 1] -- several slots: never the one-string form
          threads[#threads + 1] = a[i + 2 * (tonumber(tag) or tonumber(string.sub(tag, 2)))]
        end
      end
      threads = table.concat(threads, '\\n')
    end
    if taken < n then
      -- Some were refused: the body of the appended ones only.
      local lines, at = {}, 1
      for j = 1, n do
        local stop = string.find(body, '\\n', at, true) or (#body + 1)
        if codes[j] == 1 then lines[#lines + 1] = string.sub(body, at, stop - 1) end
        at = stop + 1
      end
      body = table.concat(lines, '\\n')
    end
    redis.call('XADD', log, first_new .. '-' .. now, 'n', taken, 'h', threads, 'b', body)
    if started then redis.call('PEXPIRE', runs, meta_ttl) end
    -- Lifetimes are pushed when a run starts or ends here, else at most every tenth of the
    -- retention age (the log then outlives its newest event by the age plus that tenth).
    local slack = math.floor(retention_ms / 10)
    local refresh = started or ended_here or not x or now - x > slack
    if refresh then
      redis.call('HSET', meta, 'seq', seq, 'x', now)
    else
      redis.call('HSET', meta, 'seq', seq)
    end
    local cutoff = now - retention_ms
    local floor
    if trimmable(seq, first, t0, count, cutoff) then
      floor = retention_floor(runs)
      trim(meta, log, seq, first, {count = count, cutoff = cutoff, floor = floor})
    end
    if refresh then
      if floor == nil then floor = redis.call('EXISTS', runs) == 1 or nil end
      redis.call('PEXPIRE', meta, meta_ttl)
      redis.call('PEXPIRE', log, floor and meta_ttl or retention_ms + slack)
    end
    redis.call('SPUBLISH', ARGV[8], epoch .. ' ' .. first_new .. '\\n' .. body)
  end
  if taken == n then return {epoch, 1, first_new} end
  local out = {epoch, 0}
  for j = 1, n do
    out[#out + 1] = codes[j]
    out[#out + 1] = values[j]
  end
  return out
end
`;

/** The helpers every generation script starts with, for tests that check one of them. */
export const LUA_PRELUDE = `local GENERATION = ''\n${PRELUDE}`;

/**
 * What each operation of a generation script does; the script picks one by ARGV[1].
 *
 * Every operation takes KEYS 1-5: the slot's generation marker, meta, log, runs, purged
 * threads; and ARGV 1-8: operation, claim (`''`, or `=<marker>`), candidate epoch, now (ms),
 * max count, retention (ms), meta TTL (ms), channel. Their own arguments follow from ARGV[9].
 * Reads return whole stream entries with the first retained seq: the caller leaves out events
 * before it and before `after`, and those of purged threads.
 *
 * - `publish`: KEYS from 6, for each run slot of the batch, its run's ended marker and
 *   approvals hash. ARGV from 9: what `append()` reads. Returns `append()`'s reply.
 * - `head`: returns `{epoch, seq}`.
 * - `acquire`: counts a connection. KEYS 6 the user's connection set. ARGV 9 member, 10 expiry
 *   (ms), 11 limit, 12 TTL (ms), 13 with the head (1|0). Drops expired entries first. Returns
 *   `{counted (1 when counted or already, else 0)}`, with the head `epoch, seq` after it when
 *   asked (the handshake's live subscription starts from it, see `RedisEngine`).
 * - `catchup`: ARGV 9 resume epoch (empty for none), 10 resume after (an integer >= 0). Returns
 *   `{epoch, seq, resumed (0|1), runs (flat HGETALL), entries, purged thread ids, first}`: when
 *   resumed, the entries from the one holding `after + 1`; otherwise those from the oldest
 *   active run's start (the caller keeps those of active runs).
 * - `read`: ARGV 9 after. Returns `{epoch, seq, complete (0|1), entries from the one holding
 *   'after + 1', purged thread ids, first}`.
 * - `purge`: ARGV 9 thread id. Records `<head seq>:<now>` for the thread, takes its runs out
 *   of the active ones, and lets the log expire by age again when no run is left. Returns the
 *   head seq.
 * - `request`: KEYS 6 and 7 the run's ended marker and approvals hash. ARGV 9 run id, 10 thread
 *   id, 11 tool call id, 12 tool, 13 timeout (ms), 14 and 15 the event JSON before and after
 *   the `expiresAt` value (the script puts the server's time + timeout between them, so the
 *   input JSON is never re-encoded). Returns `{1, seq, epoch, expiresAt}`, `{2}` (thread
 *   purged), `{0, endSeq}` (run ended), or `{3}` when this tool call was already requested. The
 *   record (a field of the run's approvals hash) lives while the run does (meta TTL) and for
 *   the retention age after its end.
 * - `resolve`, in the order of `approvalVerdict()` (_engine_rules.ts): KEYS 6 and 7 as for
 *   `request`. ARGV 9 run id, 10 tool call id, 11 approved (1|0), 12 by, 13 has a reason (1|0),
 *   14 reason, 15 ts. Returns `{'not_found'}`, `{'run_ended'}`, `{'already', approved (1|0),
 *   by, reason?}`, `{'not_expired', expiresAt}`, or `{'resolved', seq, epoch, thread id, tool}`
 *   with `tool_approval_resolved` published in the same step.
 */
const OPERATIONS = `
local op = ARGV[1]
local meta, log, runs, purged = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local meta_ttl = tonumber(ARGV[7])

if op == 'publish' then
  return append(ARGV, 9)
end

if op == 'head' then
  local epoch, seq = ensure_epoch(meta, log, runs, ARGV[3], meta_ttl)
  return {epoch, seq}
end

if op == 'acquire' then
  local conns = KEYS[6]
  redis.call('ZREMRANGEBYSCORE', conns, '-inf', ARGV[4])
  local counted = 1
  if not redis.call('ZSCORE', conns, ARGV[9])
    and redis.call('ZCARD', conns) >= tonumber(ARGV[11]) then
    counted = 0
  else
    redis.call('ZADD', conns, ARGV[10], ARGV[9])
    redis.call('PEXPIRE', conns, ARGV[12])
  end
  if ARGV[13] ~= '1' then return {counted} end
  local epoch, seq = ensure_epoch(meta, log, runs, ARGV[3], meta_ttl)
  return {counted, epoch, seq}
end

local function tidy(seq, first, t0)
  local cutoff = tonumber(ARGV[4]) - tonumber(ARGV[6])
  if trimmable(seq, first, t0, tonumber(ARGV[5]), cutoff) then
    first = trim(meta, log, seq, first,
      {count = tonumber(ARGV[5]), cutoff = cutoff, floor = retention_floor(runs)})
  end
  return first, live_purges(purged, log, first, cutoff)
end

if op == 'catchup' then
  local epoch, seq, first, t0 = ensure_epoch(meta, log, runs, ARGV[3], meta_ttl)
  redis.call('PEXPIRE', meta, meta_ttl)
  local hidden
  first, hidden = tidy(seq, first, t0)
  local active = redis.call('HGETALL', runs)
  local after = tonumber(ARGV[10])
  if ARGV[9] == epoch and after <= seq then
    if after == seq then return {epoch, seq, 1, active, {}, hidden, first} end
    local retained = oldest(log, first)
    if retained and retained <= after + 1 then
      return {epoch, seq, 1, active, entries_from(log, after + 1), hidden, first}
    end
  end
  local from = retention_floor(runs)
  if from == nil then return {epoch, seq, 0, active, {}, hidden, first} end
  return {epoch, seq, 0, active, entries_from(log, from), hidden, first}
end

if op == 'read' then
  local epoch, seq, first, t0 = ensure_epoch(meta, log, runs, ARGV[3], meta_ttl)
  local hidden
  first, hidden = tidy(seq, first, t0)
  local after = tonumber(ARGV[9])
  if after >= seq then return {epoch, seq, 1, {}, hidden, first} end
  local retained = oldest(log, first)
  local complete = 0
  if retained and retained <= after + 1 then complete = 1 end
  return {epoch, seq, complete, entries_from(log, after + 1), hidden, first}
end

if op == 'purge' then
  local epoch, seq = ensure_epoch(meta, log, runs, ARGV[3], meta_ttl)
  redis.call('HSET', purged, ARGV[9], seq .. ':' .. ARGV[4])
  redis.call('PEXPIRE', purged, meta_ttl)
  local active = redis.call('HGETALL', runs)
  for i = 1, #active, 2 do
    if thread_of(active[i + 1]) == ARGV[9] then redis.call('HDEL', runs, active[i]) end
  end
  if redis.call('EXISTS', runs) == 0 then redis.call('PEXPIRE', log, tonumber(ARGV[6])) end
  return seq
end

if op == 'request' then
  if redis.call('HEXISTS', KEYS[7], ARGV[11]) == 1 then return {3} end
  local expires = now_ms() + tonumber(ARGV[13])
  local iso = iso_time(expires)
  local r = append({1, ARGV[9], ARGV[10], '1', ARGV[14] .. iso .. ARGV[15]}, 1)
  if r[2] == 0 then
    if r[3] == 2 then return {2} end
    return {0, r[4]}
  end
  redis.call('HSET', KEYS[7], ARGV[11],
    cjson.encode({thread = ARGV[10], tool = ARGV[12], exp = expires, seq = r[3]}))
  redis.call('PEXPIRE', KEYS[7], meta_ttl)
  return {1, r[3], r[1], iso}
end

if op == 'resolve' then
  local raw = redis.call('HGET', KEYS[7], ARGV[10])
  if not raw then return {'not_found'} end
  local rec = cjson.decode(raw)
  if redis.call('HEXISTS', purged, rec.thread) == 1 then return {'not_found'} end
  if redis.call('EXISTS', KEYS[6]) == 1 then return {'run_ended'} end
  if rec.by then return {'already', rec.approved and 1 or 0, rec.by, rec.reason} end
  if ARGV[12] == 'timeout' and now_ms() < rec.exp then
    return {'not_expired', iso_time(rec.exp)}
  end
  local data = {toolCallId = ARGV[10], tool = rec.tool, approved = ARGV[11] == '1',
    by = ARGV[12]}
  if ARGV[13] == '1' then data.reason = ARGV[14] end
  local event = {threadId = rec.thread, runId = ARGV[9], name = 'tool_approval_resolved',
    data = data, ts = ARGV[15]}
  local r = append({1, ARGV[9], rec.thread, '1', cjson.encode(event)}, 1)
  if r[2] ~= 1 then return {'run_ended'} end
  rec.approved, rec.by, rec.reason, rec.rseq = data.approved, ARGV[12], data.reason, r[3]
  redis.call('HSET', KEYS[7], ARGV[10], cjson.encode(rec))
  return {'resolved', r[3], r[1], rec.thread, rec.tool}
end

return redis.error_reply('ERR unknown operation ' .. tostring(op))
`;

/** The operations of a generation script, by the name ARGV[1] gives. */
export type GenerationOperation =
  | "publish"
  | "head"
  | "acquire"
  | "catchup"
  | "read"
  | "purge"
  | "request"
  | "resolve";

/** The tokens {@link generationSource} accepts: they end up inside a Lua string. */
const TOKEN_PATTERN = /^[A-Za-z0-9_.-]{8,64}$/;

/**
 * The source of a generation script: one script for every operation on a user's log, with
 * `token` written into it, so that the script's SHA1 names the generation.
 *
 * @throws {TypeError} when `token` is not 8-64 characters of `[A-Za-z0-9_.-]`.
 */
export function generationSource(token: string): string {
  if (!TOKEN_PATTERN.test(token)) {
    throw new TypeError(`Cannot write generation script: bad token "${token}"`);
  }
  return `local GENERATION = '${token}'\n${PRELUDE}${OPERATIONS}`;
}

/**
 * Reads approval records. KEYS: the run's approvals hash, purged threads. ARGV: a tool call id,
 * or empty for every undecided one. Returns flat `{toolCallId, record JSON, …}`, leaving out
 * records of purged threads.
 */
export const READ_APPROVALS_SOURCE = `
local function visible(rec)
  return redis.call('HEXISTS', KEYS[2], rec.thread) == 0
end
if ARGV[1] ~= '' then
  local raw = redis.call('HGET', KEYS[1], ARGV[1])
  if raw and visible(cjson.decode(raw)) then return {ARGV[1], raw} end
  return {}
end
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local rec = cjson.decode(all[i + 1])
  if not rec.by and visible(rec) then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
`;
