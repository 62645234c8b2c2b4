/**
 * The timers of one client, kept together so that closing the client cancels every one of them
 * (the test sanitizers and a closed page leak nothing), over the injectable {@link ClientTimers}.
 *
 * @module
 */
import type { ClientTimers, TimerHandle } from "./timers.ts";

/** Longest delay a platform timer takes (a signed 32-bit count of milliseconds). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A set of timers that {@link TimerGroup.stop} cancels at once. */
export class TimerGroup {
  #timers: ClientTimers;
  #handles = new Set<TimerHandle>();
  #delays = new Set<() => void>();
  #stopped = false;

  constructor(timers: ClientTimers) {
    this.#timers = timers;
  }

  /** Milliseconds since the Unix epoch, from the injected clock. */
  now(): number {
    return this.#timers.now();
  }

  /** A number in [0, 1), from the injected randomness. */
  random(): number {
    return this.#timers.random();
  }

  /** Whether {@link TimerGroup.stop} was called. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /**
   * Calls `callback` once after `ms` (capped at 2^31-1 ms); nothing after `stop()`.
   *
   * @returns A handle for {@link TimerGroup.clear}.
   */
  set(callback: () => void, ms: number): TimerHandle {
    const handle = this.#timers.setTimeout(() => {
      this.#handles.delete(handle);
      callback();
    }, Math.min(Math.max(0, ms), MAX_TIMER_MS));
    if (this.#stopped) this.#timers.clearTimeout(handle);
    else this.#handles.add(handle);
    return handle;
  }

  /** Cancels a timer; a no-op for `undefined` or one that already fired. */
  clear(handle: TimerHandle | undefined): void {
    if (handle === undefined) return;
    this.#handles.delete(handle);
    this.#timers.clearTimeout(handle);
  }

  /** Resolves after `ms`, or at once when the group is (or gets) stopped. */
  delay(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#delays.delete(done);
        this.clear(handle);
        resolve();
      };
      this.#delays.add(done);
      const handle = this.set(done, ms);
    });
  }

  /** Cancels every timer and ends every delay; later timers never fire. */
  stop(): void {
    this.#stopped = true;
    for (const handle of this.#handles) this.#timers.clearTimeout(handle);
    this.#handles.clear();
    for (const done of [...this.#delays]) done();
  }
}
