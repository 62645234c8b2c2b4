/**
 * A clock that moves only when a test says so: `advance(ms)` fires due timers in time order.
 *
 * @module
 */
import type { Clock, Timer } from "../../src/_util/clock.ts";

interface Scheduled {
  at: number;
  order: number;
  callback: () => void;
  cancelled: boolean;
}

/** A {@link Clock} driven by hand. */
export class ManualClock implements Clock {
  #now: number;
  #timers: Scheduled[] = [];
  #order = 0;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(callback: () => void, ms: number): Timer {
    const timer: Scheduled = {
      at: this.#now + Math.max(0, ms),
      order: this.#order++,
      callback,
      cancelled: false,
    };
    this.#timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Timers scheduled and not yet fired or cancelled. */
  get pending(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      this.#timers = this.#timers.filter((t) => !t.cancelled);
      const due = this.#timers
        .filter((t) => t.at <= target)
        .sort((a, b) => a.at - b.at || a.order - b.order)[0];
      if (!due) break;
      this.#timers.splice(this.#timers.indexOf(due), 1);
      this.#now = Math.max(this.#now, due.at);
      due.callback();
    }
    this.#now = target;
  }
}

/** Creates a {@link ManualClock}. */
export function manualClock(start?: number): ManualClock {
  return new ManualClock(start);
}
