/**
 * What the benchmark reads about a process from `/proc` (Linux): CPU time, resident memory and
 * the machine's load average. Nothing here is sampled from inside the measured process.
 *
 * @module
 */

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux). */
export const CLOCK_TICKS_PER_SECOND = 100;

/** What `/proc/<pid>/stat` says about a process's CPU, in clock ticks. */
export interface ProcStat {
  /** The command name (at most 15 characters). */
  readonly comm: string;
  readonly ppid: number;
  /** User and system time of the process (all its threads). */
  readonly utime: number;
  readonly stime: number;
  /** User and system time of its children that exited and were waited for. */
  readonly cutime: number;
  readonly cstime: number;
}

/** Reads `/proc/<pid>/stat`, or null when the process is gone or unreadable. */
export function procStat(pid: number | "self"): ProcStat | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const close = text.lastIndexOf(")");
  const fields = text.slice(close + 2).split(" ");
  return {
    comm: text.slice(text.indexOf("(") + 1, close),
    ppid: Number(fields[1]),
    utime: Number(fields[11]),
    stime: Number(fields[12]),
    cutime: Number(fields[13]),
    cstime: Number(fields[14]),
  };
}

function ticksToMs(ticks: number): number {
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU time a process used so far (user + system, every thread), in milliseconds.
 *
 * @param pid The process, or `"self"`.
 * @returns The time, or NaN when the process is gone.
 */
export function cpuMs(pid: number | "self"): number {
  const stat = procStat(pid);
  return stat ? ticksToMs(stat.utime + stat.stime) : NaN;
}

/**
 * CPU time of a process and of all its direct children, live or exited, in milliseconds: the
 * root's own time and its reaped children's (`cutime` + `cstime`), plus each live child's own
 * and reaped children's time. A child that exits between two readings moves from the second
 * term to the root's `cutime` once the root waits for it, so the difference of two readings
 * counts every child that ran in between, the short-lived ones included.
 *
 * A child that is reaped while the directory is being read may be missed or counted twice in
 * that one reading: an error of one short-lived process's time at a window's edge.
 *
 * This is how the benchmark measures a PostgreSQL server: the postmaster forks one backend per
 * connection plus its background workers (WAL writer, checkpointer, autovacuum), all direct
 * children.
 *
 * @returns The time, or NaN when the root is gone.
 */
export function treeCpuMs(rootPid: number): number {
  const root = procStat(rootPid);
  if (!root) return NaN;
  let ticks = root.utime + root.stime + root.cutime + root.cstime;
  for (const entry of Deno.readDirSync("/proc")) {
    if (!entry.isDirectory || !/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    if (pid === rootPid) continue;
    const stat = procStat(pid);
    if (stat?.ppid === rootPid) ticks += stat.utime + stat.stime + stat.cutime + stat.cstime;
  }
  return ticksToMs(ticks);
}

/** CPU time of a probe's process (its tree when `tree`), ms; NaN when it is gone. */
export function probeCpuMs(probe: { readonly pid: number; readonly tree: boolean }): number {
  return probe.tree ? treeCpuMs(probe.pid) : cpuMs(probe.pid);
}

/** Reads every probe now, by name. */
export function readProbes(
  probes: readonly { readonly name: string; readonly pid: number; readonly tree: boolean }[],
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const probe of probes) out[probe.name] = probeCpuMs(probe);
  return out;
}

/** `after - before` for every probe of `before`. */
export function probeDelta(
  before: Record<string, number>,
  after: Record<string, number>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(before)) out[name] = after[name] - value;
  return out;
}

/**
 * Resident memory of a process, in KiB (`VmRSS` of `/proc/<pid>/status`).
 *
 * @returns The size, or NaN when the process is gone.
 */
export function rssKiB(pid: number | "self"): number {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return match ? Number(match[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Open file descriptors of a process (entries of `/proc/<pid>/fd`), or NaN when unreadable. */
export function openFds(pid: number | "self"): number {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
    return n;
  } catch {
    return NaN;
  }
}

/** The 1, 5 and 15 minute load averages. */
export function loadAverage(): [number, number, number] {
  try {
    const [a, b, c] = Deno.readTextFileSync("/proc/loadavg").split(" ").map(Number);
    return [a, b, c];
  } catch {
    return [NaN, NaN, NaN];
  }
}
