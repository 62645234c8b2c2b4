/**
 * The Lua scripts of the Redis engine. Each runs atomically on the server, so every step that
 * must be one (assign a seq, append, track the run, publish; decide an approval and publish
 * the decision; read a consistent snapshot; check-and-add a connection) is one script. See
 * `redis_engine.ts` for the key layout and the reasoning behind the epoch and retention
 * choices, and `_engine_rules.ts` for the rules the scripts share with the memory engine.
 *
 * @module
 */
import type { Redis } from "ioredis";

/** A Lua script run by its SHA1, loaded again when the server answers NOSCRIPT. */
export interface RedisScript {
  readonly source: string;
  readonly sha: string;
}

/**
 * Helpers every script starts with.
 *
 * `server_id()` reads the server's `run_id`: it differs for every start of redis-server, so a
 * log written by another incarnation (a restart, a restored snapshot, a promoted replica) is
 * noticed by the first script that touches it, with no cached value that could be stale.
 *
 * `ensure_epoch()` returns the log's epoch and seq. When the meta hash is missing (deleted,
 * expired, or lost with the data) it starts a new log: new epoch, seq 0, old events and runs
 * dropped. When the meta was written under another server `run_id`, the counter may have been
 * rewound: it names a new epoch and keeps the seq (never below the newest retained event).
 *
 * `retention_floor()` is the oldest `agent_started` seq of the active runs (nil when none):
 * retention drops nothing at or above it (`retentionFloor()` in `_engine_rules.ts`).
 * `trim_age()` drops events below the floor appended before `cutoff` (ms): entries are in seq
 * order and their append times (field `t`) almost always are too, so it looks at the oldest
 * ones only.
 *
 * `live_purges()` returns the purged thread ids still in effect, forgetting those whose events
 * are all gone and whose purge is older than `cutoff` (`purgeExpired()`).
 *
 * `now_ms()` is the server's clock (TIME), the one every instance shares for approvals;
 * `iso_time()` renders it as JavaScript's `toISOString()` does.
 *
 * `append()` is the one place an event enters a log; the scripts that publish share its KEYS
 * and ARGV layout:
 * - KEYS: meta, log, runs, ended marker of the event's run, purged threads, approvals of the
 *   event's run;
 * - ARGV: candidate epoch, now (ms, the append time), max count, retention (ms), meta TTL (ms),
 *   channel; each script's own arguments follow from ARGV[7].
 *
 * It refuses an event of a purged thread (`{2}`) or of an ended run (`{0, endSeq}`); else it
 * assigns the seq, tracks the run (`s` starts it, `e` ends it and starts the retention age of
 * its approval records), appends, trims by count and age below the floor, keeps the log while
 * a run is active, publishes `<seq> <epoch> <json>` and returns `{1, seq, epoch}`.
 */
const PRELUDE = `
local function server_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end

local function seq_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end

local function thread_of(run_value)
  return string.sub(run_value, string.find(run_value, ':', 1, true) + 1)
end

local function ensure_epoch(meta, log, runs, candidate, ttl_ms)
  local server = server_id()
  local m = redis.call('HMGET', meta, 'epoch', 'seq', 'server')
  local epoch, seq = m[1], tonumber(m[2]) or 0
  if epoch and m[3] == server then return epoch, seq end
  if epoch then
    local newest = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
    if newest and seq_of(newest[1]) > seq then seq = seq_of(newest[1]) end
  else
    redis.call('DEL', log, runs)
    seq = 0
  end
  redis.call('HSET', meta, 'epoch', candidate, 'seq', seq, 'server', server)
  redis.call('PEXPIRE', meta, ttl_ms)
  return candidate, seq
end

local function retention_floor(runs)
  local floor = nil
  for _, value in ipairs(redis.call('HVALS', runs)) do
    local start = seq_of(value)
    if floor == nil or start < floor then floor = start end
  end
  return floor
end

local function trim_age(log, cutoff, floor)
  local batch = 1
  while true do
    local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', batch)
    if #oldest == 0 then return end
    for i = 1, #oldest do
      if tonumber(oldest[i][2][2]) >= cutoff or (floor and seq_of(oldest[i][1]) >= floor) then
        if i > 1 then redis.call('XTRIM', log, 'MINID', oldest[i][1]) end
        return
      end
    end
    redis.call('XTRIM', log, 'MINID', (seq_of(oldest[#oldest][1]) + 1) .. '-0')
    batch = 64
  end
end

local function live_purges(purged, log, cutoff)
  local all = redis.call('HGETALL', purged)
  if #all == 0 then return all end
  local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
  local first = oldest and seq_of(oldest[1]) or math.huge
  local live = {}
  for i = 1, #all, 2 do
    local seq, at = string.match(all[i + 1], '^(%d+):(%d+)$')
    if tonumber(seq) < first and tonumber(at) < cutoff then
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

local function append(kind, run, thread, json)
  local meta, log, runs, ended = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local purged, approvals = KEYS[5], KEYS[6]
  local now, count = tonumber(ARGV[2]), tonumber(ARGV[3])
  local retention_ms, meta_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
  local epoch = ensure_epoch(meta, log, runs, ARGV[1], meta_ttl)
  if redis.call('HEXISTS', purged, thread) == 1 then return {2} end
  local end_seq = redis.call('GET', ended)
  if end_seq then return {0, tonumber(end_seq)} end
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  if kind == 's' then
    redis.call('HSETNX', runs, run, seq .. ':' .. thread)
    redis.call('PEXPIRE', runs, meta_ttl)
  elseif kind == 'e' then
    redis.call('HDEL', runs, run)
    redis.call('SET', ended, seq, 'PX', retention_ms)
    redis.call('PEXPIRE', approvals, retention_ms)
  end
  local floor = retention_floor(runs)
  local keep_from = seq - count + 1
  if floor and floor < keep_from then keep_from = floor end
  if keep_from > 1 then
    redis.call('XADD', log, 'MINID', keep_from, seq .. '-0', 't', now, 'h', thread, 'e', json)
  else
    redis.call('XADD', log, seq .. '-0', 't', now, 'h', thread, 'e', json)
  end
  trim_age(log, now - retention_ms, floor)
  redis.call('PEXPIRE', meta, meta_ttl)
  if floor then
    redis.call('PEXPIRE', log, meta_ttl)
  else
    redis.call('PEXPIRE', log, retention_ms)
  end
  redis.call('PUBLISH', ARGV[6], seq .. ' ' .. epoch .. ' ' .. json)
  return {1, seq, epoch}
end
`;

/** The helpers every script starts with, for tests that check one of them directly. */
export const LUA_PRELUDE = PRELUDE;

/**
 * Appends one event. KEYS and ARGV 1-6: as `append()` takes them. ARGV: 7 run id, 8 thread id,
 * 9 kind (`s` starts the run, `e` ends it, anything else neither), 10 event JSON.
 * Returns `{1, seq, epoch}`, `{0, endSeq}` when the run has ended, `{2}` when the thread was
 * purged.
 */
export const PUBLISH_SOURCE = PRELUDE + `
return append(ARGV[9], ARGV[7], ARGV[8], ARGV[10])
`;

/**
 * The handshake snapshot. KEYS: meta, log, runs, purged. ARGV: candidate epoch, now (ms),
 * retention (ms), meta TTL (ms), resume epoch (empty for none), resume after (an integer >= 0).
 * Returns `{epoch, seq, resumed (0|1), runs (flat HGETALL), entries, purged thread ids}`: when
 * resumed, the entries after `after`; otherwise every entry from the oldest active run's start
 * (the caller keeps those of active runs). The caller leaves out the purged threads' entries.
 */
export const CATCH_UP_SOURCE = PRELUDE + `
local meta, log, runs, purged = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local epoch, seq = ensure_epoch(meta, log, runs, ARGV[1], tonumber(ARGV[4]))
redis.call('PEXPIRE', meta, tonumber(ARGV[4]))
local cutoff = tonumber(ARGV[2]) - tonumber(ARGV[3])
trim_age(log, cutoff, retention_floor(runs))
local hidden = live_purges(purged, log, cutoff)
local active = redis.call('HGETALL', runs)
local after = tonumber(ARGV[6])
if ARGV[5] == epoch and after <= seq then
  if after == seq then return {epoch, seq, 1, active, {}, hidden} end
  local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
  if oldest and seq_of(oldest[1]) <= after + 1 then
    return {epoch, seq, 1, active, redis.call('XRANGE', log, (after + 1) .. '-0', '+'), hidden}
  end
end
local from = retention_floor(runs)
if from == nil then return {epoch, seq, 0, active, {}, hidden} end
return {epoch, seq, 0, active, redis.call('XRANGE', log, from .. '-0', '+'), hidden}
`;

/**
 * A range read. KEYS: meta, log, runs, purged. ARGV: candidate epoch, now (ms), retention (ms),
 * meta TTL (ms), after. Returns `{epoch, seq, complete (0|1), entries after 'after', purged
 * thread ids}`; the caller leaves out the purged threads' entries.
 */
export const READ_AFTER_SOURCE = PRELUDE + `
local meta, log, runs, purged = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local epoch, seq = ensure_epoch(meta, log, runs, ARGV[1], tonumber(ARGV[4]))
local cutoff = tonumber(ARGV[2]) - tonumber(ARGV[3])
trim_age(log, cutoff, retention_floor(runs))
local hidden = live_purges(purged, log, cutoff)
local after = tonumber(ARGV[5])
if after >= seq then return {epoch, seq, 1, {}, hidden} end
local entries = redis.call('XRANGE', log, (after + 1) .. '-0', '+')
local complete = 0
if entries[1] and seq_of(entries[1][1]) == after + 1 then complete = 1 end
return {epoch, seq, complete, entries, hidden}
`;

/**
 * Purges a thread. KEYS: meta, log, runs, purged. ARGV: candidate epoch, now (ms), retention
 * (ms), meta TTL (ms), thread id. Records `<head seq>:<now>` for the thread, takes its runs out
 * of the active ones, and lets the log expire by age again when no run is left. Returns the
 * head seq.
 */
export const PURGE_SOURCE = PRELUDE + `
local meta, log, runs, purged = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local epoch, seq = ensure_epoch(meta, log, runs, ARGV[1], tonumber(ARGV[4]))
redis.call('HSET', purged, ARGV[5], seq .. ':' .. ARGV[2])
redis.call('PEXPIRE', purged, tonumber(ARGV[4]))
local active = redis.call('HGETALL', runs)
for i = 1, #active, 2 do
  if thread_of(active[i + 1]) == ARGV[5] then redis.call('HDEL', runs, active[i]) end
end
if redis.call('EXISTS', runs) == 0 then redis.call('PEXPIRE', log, tonumber(ARGV[3])) end
return seq
`;

/**
 * Publishes `tool_approval_requested` and records the request. KEYS and ARGV 1-6: as
 * `append()` takes them. ARGV: 7 run id, 8 thread id, 9 tool call id, 10 tool, 11 timeout (ms),
 * 12 and 13 the event JSON before and after the `expiresAt` value (the script puts the
 * server's time + timeout between them, so the input JSON is never re-encoded).
 * Returns `{1, seq, epoch, expiresAt}`, `append()`'s refusals, or `{3}` when this tool call
 * was already requested. The record (a field of the run's approvals hash) lives while the run
 * does (meta TTL) and for the retention age after its end.
 */
export const REQUEST_APPROVAL_SOURCE = PRELUDE + `
if redis.call('HEXISTS', KEYS[6], ARGV[9]) == 1 then return {3} end
local expires = now_ms() + tonumber(ARGV[11])
local iso = iso_time(expires)
local r = append('', ARGV[7], ARGV[8], ARGV[12] .. iso .. ARGV[13])
if r[1] ~= 1 then return r end
redis.call('HSET', KEYS[6], ARGV[9],
  cjson.encode({thread = ARGV[8], tool = ARGV[10], exp = expires, seq = r[2]}))
redis.call('PEXPIRE', KEYS[6], tonumber(ARGV[5]))
return {1, r[2], r[3], iso}
`;

/**
 * Decides an approval, in the order of `approvalVerdict()` (_engine_rules.ts). KEYS and
 * ARGV 1-6: as `append()` takes them. ARGV: 7 run id, 8 tool call id, 9 approved (1|0), 10 by,
 * 11 has a reason (1|0), 12 reason, 13 ts.
 * Returns `{'not_found'}`, `{'run_ended'}`, `{'already', approved (1|0), by, reason?}`,
 * `{'not_expired', expiresAt}`, or `{'resolved', seq, epoch, thread id, tool}` with
 * `tool_approval_resolved` published in the same step.
 */
export const RESOLVE_APPROVAL_SOURCE = PRELUDE + `
local raw = redis.call('HGET', KEYS[6], ARGV[8])
if not raw then return {'not_found'} end
local rec = cjson.decode(raw)
if redis.call('HEXISTS', KEYS[5], rec.thread) == 1 then return {'not_found'} end
if redis.call('EXISTS', KEYS[4]) == 1 then return {'run_ended'} end
if rec.by then return {'already', rec.approved and 1 or 0, rec.by, rec.reason} end
if ARGV[10] == 'timeout' and now_ms() < rec.exp then return {'not_expired', iso_time(rec.exp)} end
local data = {toolCallId = ARGV[8], tool = rec.tool, approved = ARGV[9] == '1', by = ARGV[10]}
if ARGV[11] == '1' then data.reason = ARGV[12] end
local event = {threadId = rec.thread, runId = ARGV[7], name = 'tool_approval_resolved',
  data = data, ts = ARGV[13]}
local r = append('', ARGV[7], rec.thread, cjson.encode(event))
if r[1] ~= 1 then return {'run_ended'} end
rec.approved, rec.by, rec.reason, rec.rseq = data.approved, ARGV[10], data.reason, r[2]
redis.call('HSET', KEYS[6], ARGV[8], cjson.encode(rec))
return {'resolved', r[2], r[3], rec.thread, rec.tool}
`;

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

/**
 * Counts a connection. KEYS: the user's connection set. ARGV: member, now (ms), expiry (ms),
 * limit, TTL (ms). Drops expired entries first. Returns 1 when counted (or already), else 0.
 */
export const ACQUIRE_SOURCE = `
local conns = KEYS[1]
redis.call('ZREMRANGEBYSCORE', conns, '-inf', ARGV[2])
if not redis.call('ZSCORE', conns, ARGV[1]) and redis.call('ZCARD', conns) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', conns, ARGV[3], ARGV[1])
redis.call('PEXPIRE', conns, ARGV[5])
return 1
`;

/** Computes the SHA1 a script is cached under. */
export async function defineScript(source: string): Promise<RedisScript> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(source));
  const sha = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  return { source, sha };
}

/**
 * Runs a script by SHA1 and, when the server does not have it (a restart, SCRIPT FLUSH),
 * by source, which caches it again.
 */
export async function runScript(
  redis: Redis,
  script: RedisScript,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  try {
    return await redis.evalsha(script.sha, keys.length, ...keys, ...args);
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
    return await redis.eval(script.source, keys.length, ...keys, ...args);
  }
}
