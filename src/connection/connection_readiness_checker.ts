/**
 * Keeps each dependency's readiness from a background probe, with hysteresis, so that
 * `/health/ready` and every new handshake read a cached answer instead of probing per call.
 *
 * @module
 */
import type { Clock, Timer } from "../_util/clock.ts";
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";

/** Probes one dependency: resolves when it answers. */
export type Probe = () => Promise<void>;

/** The state of one dependency. */
export interface DependencyCheck {
  readonly status: "up" | "down";
  /** ISO time of the last change. */
  readonly since: string;
  /** The last probe failure while down. */
  readonly error?: string;
}

/** The readiness report behind `/health/ready`. */
export interface ReadinessReport {
  readonly status: "ready" | "not_ready" | "draining";
  readonly checks: Record<string, DependencyCheck>;
}

/** Options of {@link ConnectionReadinessChecker}. */
export interface ReadinessOptions {
  readonly clock: Clock;
  /** One probe per dependency, by the name shown on `/health/ready`. */
  readonly probes: Record<string, Probe>;
  /** @default 1000 */
  readonly intervalMs?: number;
  /** A probe that takes longer fails. @default 2000 */
  readonly timeoutMs?: number;
  /** Consecutive failures before an up dependency is marked down. @default 2 */
  readonly failThreshold?: number;
  /** Consecutive successes before a down dependency is marked up. @default 2 */
  readonly recoverThreshold?: number;
  readonly log?: Logger;
  /** Called on every change of a dependency's status. */
  readonly onChange?: (name: string, status: "up" | "down") => void;
}

interface DependencyState {
  status: "up" | "down";
  since: number;
  error?: string;
  streak: number;
  everUp: boolean;
}

/**
 * Background readiness of the dependencies. Every dependency starts `down` until its first
 * successful probe; `start()` probes at once.
 */
export class ConnectionReadinessChecker {
  #options: Required<Omit<ReadinessOptions, "log" | "onChange">> & ReadinessOptions;
  #states = new Map<string, DependencyState>();
  #timer?: Timer;
  #running = false;
  #probing = false;
  #draining = false;
  #ready = false;

  constructor(options: ReadinessOptions) {
    this.#options = {
      intervalMs: 1000,
      timeoutMs: 2000,
      failThreshold: 2,
      recoverThreshold: 2,
      ...options,
    };
    for (const name of Object.keys(options.probes)) {
      this.#states.set(name, {
        status: "down",
        since: options.clock.now(),
        streak: 0,
        everUp: false,
      });
    }
    this.#ready = this.#states.size === 0;
  }

  /** Starts the background probe; the first round runs at once. Resolves after it. */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    await this.probeNow();
  }

  /** Stops probing. */
  stop(): void {
    this.#running = false;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  /** True when every dependency is up (ignores draining). */
  dependenciesReady(): boolean {
    return this.#ready;
  }

  /** True once {@link markDraining} was called. */
  draining(): boolean {
    return this.#draining;
  }

  /** Reports `draining` from now on. */
  markDraining(): void {
    this.#draining = true;
  }

  /** The report for `/health/ready`. */
  report(): ReadinessReport {
    const checks: Record<string, DependencyCheck> = {};
    for (const [name, state] of this.#states) {
      checks[name] = {
        status: state.status,
        since: new Date(state.since).toISOString(),
        ...(state.status === "down" && state.error ? { error: state.error } : {}),
      };
    }
    const status = this.#draining ? "draining" : this.#ready ? "ready" : "not_ready";
    return { status, checks };
  }

  /**
   * A caller saw a dependency fail in real traffic: probe again now rather than at the next
   * interval. Does not mark it down by itself (one failed call is not an outage).
   */
  reportFailure(_name: string): void {
    if (this.#running && !this.#probing) void this.probeNow();
  }

  /** Runs one probe round now (no-op if one is under way). */
  async probeNow(): Promise<void> {
    if (this.#probing) return;
    this.#probing = true;
    this.#timer?.cancel();
    try {
      await Promise.all(
        [...Object.entries(this.#options.probes)].map(([name, probe]) =>
          this.#probeOne(name, probe)
        ),
      );
    } finally {
      this.#probing = false;
      this.#ready = [...this.#states.values()].every((s) => s.status === "up");
      if (this.#running) {
        this.#timer = this.#options.clock.setTimer(
          () => void this.probeNow(),
          this.#options.intervalMs,
        );
      }
    }
  }

  async #probeOne(name: string, probe: Probe): Promise<void> {
    const state = this.#states.get(name)!;
    let error: string | undefined;
    let timer: Timer | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = this.#options.clock.setTimer(
          () => reject(new Error(`probe timed out after ${this.#options.timeoutMs} ms`)),
          this.#options.timeoutMs,
        );
        probe().then(resolve, reject);
      });
    } catch (e) {
      error = errorMessage(e);
    } finally {
      timer?.cancel();
    }
    const ok = error === undefined;
    const wanted = ok ? "up" : "down";
    if (state.status === wanted) {
      state.streak = 0;
      if (!ok) state.error = error;
      return;
    }
    state.streak++;
    if (!ok) state.error = error;
    // The first success after start needs no streak: nothing was ever up to flap.
    const firstUp = ok && !state.everUp;
    const threshold = ok ? this.#options.recoverThreshold : this.#options.failThreshold;
    if (state.streak >= threshold || firstUp) {
      state.status = wanted;
      state.since = this.#options.clock.now();
      state.streak = 0;
      if (ok) {
        state.error = undefined;
        state.everUp = true;
      }
      this.#options.log?.[ok ? "info" : "warn"]("dependency " + (ok ? "up" : "down"), {
        dependency: name,
        ...(error ? { error } : {}),
      });
      this.#options.onChange?.(name, wanted);
    }
  }
}
