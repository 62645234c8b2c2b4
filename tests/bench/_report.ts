/**
 * The bench's report: rows grouped in sections, printed as plain-text tables and saved as JSON.
 * A row holds one value per column (`agentsocket`, `bare`, or whatever its section compares),
 * the ratio of its first two columns, and a target when there is one.
 *
 * @module
 */

/** One line of a table. */
export interface Row {
  /** The table it belongs to (its title). */
  readonly section: string;
  readonly metric: string;
  /** Values by column; a section's columns are the keys of its rows, in first-seen order. */
  readonly cells: Readonly<Record<string, number | undefined>>;
  /** First column / second column, or first - second when `difference`. */
  readonly ratio?: number;
  readonly difference?: boolean;
  readonly target?: string;
  readonly met?: boolean;
}

/** A target on a ratio: its text (`≤ 2×`) and its test. */
export interface RatioTarget {
  readonly text: string;
  test(ratio: number): boolean;
}

/** `≤ n×`. */
export function atMost(n: number): RatioTarget {
  return { text: `≤ ${n}×`, test: (ratio) => ratio <= n };
}

/** `≥ n×`. */
export function atLeast(n: number): RatioTarget {
  return { text: `≥ ${n}×`, test: (ratio) => ratio >= n };
}

/** A number for a table: thousands separated, 0-3 decimals by magnitude; `—` when missing. */
export function fmt(value: number | undefined | null, digits?: number): string {
  if (value === undefined || value === null || !Number.isFinite(value)) return "—";
  if (digits === undefined && Number.isInteger(value)) return value.toLocaleString("en-US");
  const abs = Math.abs(value);
  const d = digits ?? (abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3);
  return value.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
}

/**
 * A row comparing two columns (`agentsocket` and `bare` unless `columns` says otherwise),
 * with their ratio and, when given, a target on it.
 */
export function pairRow(
  section: string,
  metric: string,
  values: readonly [number, number],
  options: { readonly target?: RatioTarget; readonly columns?: readonly [string, string] } = {},
): Row {
  const [a, b] = values;
  const [nameA, nameB] = options.columns ?? ["agentsocket", "bare"];
  const ratio = a / b;
  return {
    section,
    metric,
    cells: { [nameA]: a, [nameB]: b },
    ratio,
    target: options.target?.text,
    met: options.target ? options.target.test(ratio) : undefined,
  };
}

/** CPU per operation of one server setup: the server process and the services' servers. */
export interface CpuPerOperation {
  /** The server process (Deno or Node). */
  readonly server: number;
  /** The Redis server; undefined when it was not measured (no Redis, or not found). */
  readonly redis?: number;
  /** The PostgreSQL server (postmaster and all its children). */
  readonly postgres?: number;
  /** The sum of what was measured. */
  readonly total: number;
}

/** Sums a CPU breakdown into {@link CpuPerOperation}. */
export function cpuPerOperation(
  cpuMs: Readonly<Record<string, number>>,
  operations: number,
  scale: number,
): CpuPerOperation {
  const per = (name: string) =>
    cpuMs[name] === undefined ? undefined : (cpuMs[name] * scale) / Math.max(1, operations);
  const server = per("server") ?? NaN;
  const redis = per("redis");
  const postgres = per("postgres");
  return { server, redis, postgres, total: server + (redis ?? 0) + (postgres ?? 0) };
}

/**
 * Rows of a CPU breakdown per operation, one column per setup: the server process, then (when
 * the first setup had them measured) Redis, PostgreSQL and their total. The ratio is first
 * column / second; the target goes on the total when there is a breakdown, on the server row
 * otherwise. Services measured during a setup that does not use them (the bare server) show
 * what other clients of those servers cost meanwhile: 0 on a quiet machine.
 */
export function cpuRows(
  section: string,
  columns: readonly (readonly [string, CpuPerOperation])[],
  options: {
    readonly what: string;
    readonly unit: string;
    /** On the ratio of the totals (of the server rows without services). */
    readonly target?: RatioTarget;
    /** An upper bound on the first setup's Redis CPU per operation, in `unit`. */
    readonly redisAtMost?: number;
  },
): Row[] {
  const { what, unit, target, redisAtMost } = options;
  const first = columns[0][1];
  const services = first.redis !== undefined || first.postgres !== undefined;
  const row = (
    metric: string,
    value: (cpu: CpuPerOperation) => number | undefined,
    withTarget: boolean,
  ): Row => {
    const a = value(columns[0][1]);
    const b = columns.length > 1 ? value(columns[1][1]) : undefined;
    const ratio = a !== undefined && b !== undefined ? a / b : undefined;
    const t = withTarget ? target : undefined;
    return {
      section,
      metric,
      cells: Object.fromEntries(columns.map(([name, cpu]) => [name, value(cpu)])),
      ratio,
      target: t?.text,
      met: t && ratio !== undefined ? t.test(ratio) : undefined,
    };
  };
  const rows = [row(`server CPU per ${what} (${unit})`, (c) => c.server, !services)];
  if (!services) return rows;
  if (first.redis !== undefined) {
    const redis = row(`Redis CPU per ${what} (${unit})`, (c) => c.redis ?? NaN, false);
    rows.push(
      redisAtMost === undefined ? redis : {
        ...redis,
        target: `≤ ${redisAtMost} ${unit}`,
        met: first.redis <= redisAtMost,
      },
    );
  }
  if (first.postgres !== undefined) {
    rows.push(row(`PostgreSQL CPU per ${what} (${unit})`, (c) => c.postgres ?? NaN, false));
  }
  rows.push(row(`total CPU per ${what} (${unit}, server + services)`, (c) => c.total, true));
  return rows;
}

/** The rows as plain-text tables, one per section. */
export function printTable(rows: readonly Row[]): string {
  const out: string[] = [];
  const sections: string[] = [];
  for (const row of rows) if (!sections.includes(row.section)) sections.push(row.section);
  for (const section of sections) {
    const own = rows.filter((row) => row.section === section);
    const columns: string[] = [];
    for (const row of own) {
      for (const name of Object.keys(row.cells)) if (!columns.includes(name)) columns.push(name);
    }
    const header = ["metric", ...columns, "ratio", "target", ""];
    const lines = own.map((row) => [
      row.metric,
      ...columns.map((name) => fmt(row.cells[name])),
      row.ratio === undefined
        ? ""
        : !Number.isFinite(row.ratio)
        ? "—"
        : row.difference
        ? `${row.ratio >= 0 ? "+" : ""}${fmt(row.ratio)}`
        : `${fmt(row.ratio, 2)}×`,
      row.target ?? "",
      row.met === undefined ? "" : row.met ? "met" : "MISSED",
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
    out.push(`\n## ${section}`);
    out.push(header.map((h, i) => h.padEnd(widths[i])).join("  "));
    for (const line of lines) {
      out.push(
        line.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))
          .join("  "),
      );
    }
  }
  return out.join("\n");
}
