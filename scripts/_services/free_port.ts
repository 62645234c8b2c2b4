/**
 * Ports on 127.0.0.1: a free one to start a server on, and whether one is served.
 *
 * @module
 */

/** A free TCP port on 127.0.0.1 (bind to 0, read it, release it). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** True when something accepts TCP connections on 127.0.0.1:`port`. */
export async function isPortOpen(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port,
      signal: AbortSignal.timeout(2_000),
    });
    conn.close();
    return true;
  } catch {
    return false;
  }
}
