/**
 * A minimal Prometheus registry: counters, gauges and histograms with labels, rendered in the
 * text exposition format. Hand-rolled because it is small and the hot paths stay allocation-free.
 *
 * @module
 */

type Labels = Record<string, string>;

function labelKey(labels: Labels | undefined): string {
  if (labels === undefined) return "";
  const keys = Object.keys(labels);
  if (keys.length === 0) return "";
  keys.sort();
  return keys.map((k) => `${k}="${escapeLabel(labels[k])}"`).join(",");
}

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
}

/** A monotonically increasing count, per label set. */
export class Counter {
  readonly name: string;
  readonly help: string;
  #values = new Map<string, number>();
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  /** Adds `by` (default 1) to the series named by `labels`. */
  inc(labels?: Labels, by = 1): void {
    const key = labelKey(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }
  /** The current value of one series (0 when never incremented). */
  get(labels?: Labels): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  /** Sets the series to 0 when it has never been written, so it shows on `/metrics`. */
  declare(labels?: Labels): void {
    const key = labelKey(labels);
    if (!this.#values.has(key)) this.#values.set(key, 0);
  }
  render(): string {
    return renderSeries(this.name, this.help, "counter", this.#values);
  }
}

/** A value that goes up and down, per label set, or read from a callback. */
export class Gauge {
  readonly name: string;
  readonly help: string;
  #values = new Map<string, number>();
  #collect?: () => Iterable<[Labels | undefined, number]>;
  #type: "gauge" | "counter";
  /**
   * @param collect Reads the values at render time instead of `set`/`add`.
   * @param type `counter` for a monotonic count kept elsewhere and read by `collect`.
   */
  constructor(
    name: string,
    help: string,
    collect?: () => Iterable<[Labels | undefined, number]>,
    type: "gauge" | "counter" = "gauge",
  ) {
    this.name = name;
    this.help = help;
    this.#collect = collect;
    this.#type = type;
  }
  set(value: number, labels?: Labels): void {
    this.#values.set(labelKey(labels), value);
  }
  add(by: number, labels?: Labels): void {
    const key = labelKey(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }
  get(labels?: Labels): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  render(): string {
    if (this.#collect) {
      for (const [labels, value] of this.#collect()) this.#values.set(labelKey(labels), value);
    }
    return renderSeries(this.name, this.help, this.#type, this.#values);
  }
}

/** A distribution over fixed buckets (upper bounds, in the metric's unit). */
export class Histogram {
  readonly name: string;
  readonly help: string;
  readonly buckets: readonly number[];
  #counts: number[];
  #sum = 0;
  #count = 0;
  constructor(name: string, help: string, buckets: readonly number[]) {
    this.name = name;
    this.help = help;
    this.buckets = [...buckets].sort((a, b) => a - b);
    this.#counts = this.buckets.map(() => 0);
  }
  observe(value: number): void {
    this.#sum += value;
    this.#count++;
    for (let i = 0; i < this.buckets.length; i++) {
      if (value <= this.buckets[i]) this.#counts[i]++;
    }
  }
  get count(): number {
    return this.#count;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((bound, i) => {
      lines.push(`${this.name}_bucket{le="${bound}"} ${this.#counts[i]}`);
    });
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.#count}`);
    lines.push(`${this.name}_sum ${this.#sum}`, `${this.name}_count ${this.#count}`);
    return lines.join("\n");
  }
}

function renderSeries(
  name: string,
  help: string,
  type: string,
  values: Map<string, number>,
): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
  for (const [key, value] of values) {
    lines.push(key ? `${name}{${key}} ${value}` : `${name} ${value}`);
  }
  return lines.join("\n");
}

/** A set of metrics rendered together on `/metrics`. */
export class MetricsRegistry {
  #metrics: { render(): string }[] = [];
  /** Registers a metric and returns it. */
  register<T extends { render(): string }>(metric: T): T {
    this.#metrics.push(metric);
    return metric;
  }
  /** The Prometheus text exposition of every registered metric. */
  render(): string {
    return this.#metrics.map((m) => m.render()).join("\n") + "\n";
  }
}
