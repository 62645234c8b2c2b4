/**
 * Order statistics for the benchmark: percentiles of one run, medians across runs.
 *
 * @module
 */

/** Percentiles of a sample, in its unit. */
export interface Summary {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

/**
 * The `p`-th percentile (nearest rank) of an ascending sample.
 *
 * @param sorted Values in ascending order.
 * @param p From 0 to 100.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Options of {@link summarize}. */
export interface SummarizeOptions {
  /** Attempts that gave no value (failed, timed out): each counts as `worst`. */
  readonly failures?: number;
  /** The value a failure counts as (the time limit a client waited). */
  readonly worst?: number;
}

/**
 * Summarises a sample (copied, then sorted). Failures count as the worst value, so that a
 * percentile says what that share of attempts got: with 2% failures, p99 is `worst`.
 */
export function summarize(values: readonly number[], options: SummarizeOptions = {}): Summary {
  const failures = options.failures ?? 0;
  if (failures > 0 && options.worst === undefined) {
    throw new TypeError("summarize() needs the worst value to count failures");
  }
  const all = failures > 0
    ? [...values, ...new Array<number>(failures).fill(options.worst!)]
    : values;
  const sorted = Float64Array.from(all).sort();
  const list = Array.from(sorted);
  let sum = 0;
  for (const v of list) sum += v;
  return {
    n: list.length,
    p50: percentile(list, 50),
    p99: percentile(list, 99),
    max: list.length > 0 ? list[list.length - 1] : NaN,
    mean: list.length > 0 ? sum / list.length : NaN,
  };
}

/**
 * The items in the order of repeat `repeat`: rotated by one place per repeat, so that with two
 * items the order alternates, and each item goes first equally often.
 */
export function rotation<T>(items: readonly T[], repeat: number): T[] {
  if (items.length === 0) return [];
  const shift = repeat % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/** The median of the finite values (NaN when there is none). */
export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (finite.length === 0) return NaN;
  const mid = Math.floor(finite.length / 2);
  return finite.length % 2 === 1 ? finite[mid] : (finite[mid - 1] + finite[mid]) / 2;
}

/**
 * The element-wise median of several runs' numeric fields: every numeric field of the first
 * run is replaced by its median over all runs; other fields are taken from the first run.
 */
export function medianOfRuns<T extends object>(runs: readonly T[]): T {
  if (runs.length === 0) throw new RangeError("Cannot take the median of no runs");
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(runs[0])) {
    if (typeof value === "number") {
      out[key] = median(runs.map((run) => (run as Record<string, unknown>)[key] as number));
    } else if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      out[key] = medianOfRuns(runs.map((run) => (run as Record<string, object>)[key]));
    } else {
      out[key] = value;
    }
  }
  return out as T;
}
