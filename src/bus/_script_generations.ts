/**
 * Which generation of the Redis engine's log script each slot runs, and how a new one is booted
 * when the server behind a slot has changed. This is how the engine notices a Redis restart, a
 * restored snapshot, a failover or a proxy that moved to another server, without asking the
 * server who it is on every call (an `INFO` per script cost more than the rest of a publish).
 *
 * A generation is a random token written into the script's source (`generationSource()`), so its
 * SHA1 names it. The one way a generation gets into a server's script cache is its boot: an EVAL
 * of the source, made by the instance that drew the token, which runs on the process that caches
 * it. The script cache is per process: it is neither saved (RDB, AOF) nor replicated (Redis 7).
 * So when `EVALSHA` of a generation succeeds, the process that runs it is the one the generation
 * was booted on; and every log meta stamped with that generation was written by that process.
 * A log whose meta names another generation may have been rewound (an older snapshot, a replica
 * that lagged): the script names a new epoch for it (see `_redis_scripts.ts`).
 *
 * The signal is `NOSCRIPT`: a server that never booted this instance's generation answers it,
 * whichever way the instance reached it (a new TCP connection, or the same one through a proxy).
 * Then the instance reads the slot's generation marker: another instance may have booted one on
 * this server already, and `EVALSHA` of it tells (it succeeds only where it was booted); else it
 * boots a fresh one, claiming the marker only if it still holds what it read, so that every
 * instance ends up on the same generation for a slot (two generations would stamp a user's log
 * in turn and rename its epoch on every call). A script run with a generation the marker does
 * not name answers `STALEGEN <marker>` and the instance switches.
 *
 * ioredis' `defineCommand` is not used for these scripts: on `NOSCRIPT` it would EVAL the same
 * source again, caching a known generation on a server it was not booted on, which is exactly
 * the case this has to catch.
 *
 * @module
 */
import { generationSource } from "./_redis_scripts.ts";
import type { GenerationOperation } from "./_redis_scripts.ts";

/** The commands the generations need; both ioredis' `Redis` and `Cluster` have them. */
export interface ScriptRunner {
  evalsha(sha: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  get(key: string): Promise<string | null>;
}

/** One generation: its token and script. */
interface Generation {
  readonly token: string;
  readonly source: string;
  readonly sha: string;
}

/** What one call of a generation script takes, after the marker and the operation. */
export interface GenerationCall {
  /** The slot's generation marker key (KEYS[1]), in the same slot as `keys`. */
  readonly marker: string;
  /** KEYS from 2. */
  readonly keys: readonly string[];
  /** ARGV from 3 (after the operation and the claim). */
  readonly args: readonly (string | number)[];
}

/** Tries of one call before it gives up (each a NOSCRIPT or STALEGEN answer). */
const MAX_TRIES = 8;

/** Thrown when a call could not settle on a generation in {@link MAX_TRIES} tries. */
export class GenerationUnsettledError extends Error {
  constructor(slot: number) {
    super(`Cannot run the log script: slot ${slot} kept changing generation`);
    this.name = "GenerationUnsettledError";
  }
}

/** Options of {@link ScriptGenerations}. */
export interface ScriptGenerationsOptions {
  /**
   * The server a slot is on, as far as the client knows (a cluster node's key), so that a
   * slot met for the first time tries the generation its server already runs.
   * @default every slot on one server
   */
  readonly serverOf?: (slot: number) => string;
}

/** The generation each slot runs, per engine instance. */
export class ScriptGenerations {
  #redis: ScriptRunner;
  #serverOf: (slot: number) => string;
  #known = new Map<string, Generation>();
  #bySlot = new Map<number, Generation>();
  /** The generation last seen running on each server. */
  #byServer = new Map<string, Generation>();
  /** A boot in flight per server: calls that need one meanwhile wait and try its generation. */
  #booting = new Map<string, Promise<Generation | undefined>>();
  #boots = 0;

  constructor(redis: ScriptRunner, options: ScriptGenerationsOptions = {}) {
    this.#redis = redis;
    this.#serverOf = options.serverOf ?? (() => "");
  }

  /** Generations this instance booted (for tests: a restart shows as a boot). */
  get boots(): number {
    return this.#boots;
  }

  /**
   * Runs `op` for a key in `slot`, booting or adopting the slot's generation as needed.
   *
   * @throws {GenerationUnsettledError} when the slot's generation kept changing.
   */
  async run(slot: number, op: GenerationOperation, call: GenerationCall): Promise<unknown> {
    const keys = [call.marker, ...call.keys];
    const server = this.#serverOf(slot);
    /** Generations this call found missing on the server. */
    const missing = new Set<string>();
    /** The slot's marker as last read or answered; undefined until then. */
    let marker: string | undefined;
    const pick = async (): Promise<Generation | undefined> => {
      if (marker && !missing.has(marker)) return await this.#generation(marker);
      const latest = this.#byServer.get(server);
      return latest && !missing.has(latest.token) ? latest : undefined;
    };
    let generation = this.#bySlot.get(slot) ?? this.#byServer.get(server);
    for (let tries = 0; tries < MAX_TRIES; tries++) {
      if (!generation) {
        if (marker === undefined) {
          marker = (await this.#redis.get(call.marker)) ?? "";
          generation = await pick();
          continue;
        }
        const inFlight = this.#booting.get(server);
        if (inFlight) {
          // Another call of this instance is booting one on this server: use it, once booted.
          const booted = await inFlight;
          if (booted && !missing.has(booted.token)) {
            generation = booted;
            continue;
          }
        }
      }
      // A marker that is missing, or names a generation this server does not have, may be
      // replaced: say so, with the value read, so that a concurrent change wins instead.
      const claim = marker !== undefined && (marker === "" || missing.has(marker))
        ? `=${marker}`
        : "";
      let boot: PromiseWithResolvers<Generation | undefined> | undefined;
      if (!generation) {
        boot = Promise.withResolvers();
        this.#booting.set(server, boot.promise); // before any await: one boot at a time
        generation = await this.#generation(randomToken());
      }
      try {
        const reply = boot
          ? await this.#redis.eval(generation.source, keys.length, ...keys, op, claim, ...call.args)
          : await this.#redis.evalsha(
            generation.sha,
            keys.length,
            ...keys,
            op,
            claim,
            ...call.args,
          );
        if (boot) this.#boots++;
        this.#bySlot.set(slot, generation);
        this.#byServer.set(server, generation);
        boot?.resolve(generation);
        return reply;
      } catch (error) {
        const answered = staleMarker(error);
        // A boot whose claim lost still cached its generation here: others may use it.
        boot?.resolve(answered === undefined ? undefined : generation);
        if (answered !== undefined) {
          marker = answered;
        } else if (!boot && isNoScript(error)) {
          missing.add(generation.token);
          if (this.#byServer.get(server) === generation) this.#byServer.delete(server);
          if (this.#bySlot.get(slot) === generation) this.#bySlot.delete(slot);
          marker ??= (await this.#redis.get(call.marker)) ?? "";
        } else {
          throw error;
        }
        generation = await pick();
      } finally {
        if (boot && this.#booting.get(server) === boot.promise) this.#booting.delete(server);
      }
    }
    throw new GenerationUnsettledError(slot);
  }

  async #generation(token: string): Promise<Generation> {
    const known = this.#known.get(token);
    if (known) return known;
    const source = generationSource(token);
    const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(source));
    const sha = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"))
      .join("");
    const generation = { token, source, sha };
    this.#known.set(token, generation);
    return generation;
  }
}

/** The marker a `STALEGEN <marker>` reply names, or undefined for any other error. */
function staleMarker(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const match = /^STALEGEN ?(\S*)/.exec(error.message);
  return match ? match[1] : undefined;
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("NOSCRIPT");
}

/** 16 random url-safe characters (96 bits). */
function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}
