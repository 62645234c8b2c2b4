/**
 * What the benchmark reads about a process from `/proc` (Linux): CPU time, resident memory and
 * the machine's load average. Nothing here is sampled from inside the measured process.
 *
 * @module
 */

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux). */
export const CLOCK_TICKS_PER_SECOND = 100;

/**
 * CPU time a process used so far (user + system), in milliseconds.
 *
 * @param pid The process, or `"self"`.
 * @returns The time, or NaN when the process is gone.
 */
export function cpuMs(pid: number | "self"): number {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return NaN;
  }
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / CLOCK_TICKS_PER_SECOND;
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
