/**
 * The Lua scripts of the Redis engine. Each runs atomically on the server, so every step that
 * must be one (assign a seq, append, track the run, publish; read a consistent snapshot;
 * check-and-add a connection) is one script. See `redis_engine.ts` for the key layout and the
 * reasoning behind the epoch and retention choices.
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
 * Helpers every script that touches a user's log starts with.
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
 * `trim_age()` drops events appended before `cutoff` (milliseconds): entries are in seq order
 * and their append times (field `t`) almost always are too, so it looks at the oldest ones only.
 */
const PRELUDE = `
local function server_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end

local function seq_of(id)
  return tonumber(string.match(id, '^(%d+)'))
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

local function trim_age(log, cutoff)
  local batch = 1
  while true do
    local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', batch)
    if #oldest == 0 then return end
    for i = 1, #oldest do
      if tonumber(oldest[i][2][2]) >= cutoff then
        if i > 1 then redis.call('XTRIM', log, 'MINID', oldest[i][1]) end
        return
      end
    end
    redis.call('XTRIM', log, 'MINID', (seq_of(oldest[#oldest][1]) + 1) .. '-0')
    batch = 64
  end
end
`;

/**
 * Appends one event. KEYS: meta, log, runs, ended marker of the event's run.
 * ARGV: candidate epoch, now (ms), max count, retention (ms), meta TTL (ms), channel, run id,
 * thread id, kind (`s` starts the run, `e` ends it, anything else neither), event JSON.
 * Returns `{1, seq, epoch}`, or `{0, endSeq}` when the run has ended.
 */
export const PUBLISH_SOURCE = PRELUDE + `
local meta, log, runs, ended = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, retention_ms, meta_ttl = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
local epoch = ensure_epoch(meta, log, runs, ARGV[1], meta_ttl)
local end_seq = redis.call('GET', ended)
if end_seq then return {0, tonumber(end_seq)} end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
redis.call('XADD', log, 'MAXLEN', ARGV[3], seq .. '-0', 't', ARGV[2], 'e', ARGV[10])
trim_age(log, now - retention_ms)
if ARGV[9] == 's' then
  redis.call('HSETNX', runs, ARGV[7], seq .. ':' .. ARGV[8])
  redis.call('PEXPIRE', runs, meta_ttl)
elseif ARGV[9] == 'e' then
  redis.call('HDEL', runs, ARGV[7])
  redis.call('SET', ended, seq, 'PX', retention_ms)
end
redis.call('PEXPIRE', meta, meta_ttl)
redis.call('PEXPIRE', log, retention_ms)
redis.call('PUBLISH', ARGV[6], seq .. ' ' .. epoch .. ' ' .. ARGV[10])
return {1, seq, epoch}
`;

/**
 * The handshake snapshot. KEYS: meta, log, runs. ARGV: candidate epoch, now (ms), retention
 * (ms), meta TTL (ms), resume epoch (empty for none), resume after (an integer >= 0).
 * Returns `{epoch, seq, resumed (0|1), runs (flat HGETALL), entries}`: when resumed, the entries
 * after `after`; otherwise every entry from the oldest active run's start (the caller keeps
 * those of active runs).
 */
export const CATCH_UP_SOURCE = PRELUDE + `
local meta, log, runs = KEYS[1], KEYS[2], KEYS[3]
local epoch, seq = ensure_epoch(meta, log, runs, ARGV[1], tonumber(ARGV[4]))
redis.call('PEXPIRE', meta, tonumber(ARGV[4]))
trim_age(log, tonumber(ARGV[2]) - tonumber(ARGV[3]))
local active = redis.call('HGETALL', runs)
local after = tonumber(ARGV[6])
if ARGV[5] == epoch and after <= seq then
  if after == seq then return {epoch, seq, 1, active, {}} end
  local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
  if oldest and seq_of(oldest[1]) <= after + 1 then
    return {epoch, seq, 1, active, redis.call('XRANGE', log, (after + 1) .. '-0', '+')}
  end
end
local from = nil
for i = 2, #active, 2 do
  local start = seq_of(active[i])
  if from == nil or start < from then from = start end
end
if from == nil then return {epoch, seq, 0, active, {}} end
return {epoch, seq, 0, active, redis.call('XRANGE', log, from .. '-0', '+')}
`;

/**
 * A range read. KEYS: meta, log, runs. ARGV: candidate epoch, now (ms), retention (ms), meta TTL
 * (ms), after. Returns `{epoch, seq, complete (0|1), entries after 'after'}`.
 */
export const READ_AFTER_SOURCE = PRELUDE + `
local meta, log, runs = KEYS[1], KEYS[2], KEYS[3]
local epoch, seq = ensure_epoch(meta, log, runs, ARGV[1], tonumber(ARGV[4]))
trim_age(log, tonumber(ARGV[2]) - tonumber(ARGV[3]))
local after = tonumber(ARGV[5])
if after >= seq then return {epoch, seq, 1, {}} end
local entries = redis.call('XRANGE', log, (after + 1) .. '-0', '+')
local complete = 0
if entries[1] and seq_of(entries[1][1]) == after + 1 then complete = 1 end
return {epoch, seq, complete, entries}
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
