/**
 * A TCP proxy on a free 127.0.0.1 port that forwards every client connection to one backend,
 * and can move to another backend while keeping the clients' connections open: what an Envoy
 * or a cloud endpoint does when the server behind it changes. A test uses it to show that a
 * client cannot trust a value it read from "its" server once, on connect.
 *
 * @module
 */
import { freePort } from "../../scripts/_services/mod.ts";

/** The proxy; `await using` closes it and every connection through it. */
export interface SwitchingProxy extends AsyncDisposable {
  /** `redis://127.0.0.1:<port>` of the proxy. */
  readonly url: string;
  /**
   * Forwards every connection to `port` from now on: each client keeps its connection, and its
   * next bytes go to a new connection to the new backend. Resolves once every client's upstream
   * was switched; call it while the clients are idle (no reply in flight).
   */
  switchTo(port: number): Promise<void>;
}

interface Pair {
  readonly client: Deno.TcpConn;
  upstream: Deno.TcpConn;
  /** Resolves when the current upstream's pump to the client stopped. */
  upstreamDone: Promise<void>;
}

/** Starts a proxy forwarding to 127.0.0.1:`backendPort`. */
export function startSwitchingProxy(backendPort: number): SwitchingProxy {
  const port = freePort();
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  let backend = backendPort;
  const pairs = new Set<Pair>();
  const pumps = new Set<Promise<void>>();

  const pipe = (from: Deno.Conn, to: Deno.Conn): Promise<void> =>
    (async () => {
      const buffer = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await from.read(buffer);
          if (n === null) return;
          let written = 0;
          while (written < n) written += await to.write(buffer.subarray(written, n));
        }
      } catch {
        // a closed side ends the pump
      }
    })();

  const track = (promise: Promise<void>) => {
    pumps.add(promise);
    promise.finally(() => pumps.delete(promise));
    return promise;
  };

  const accepting = track((async () => {
    for await (const client of listener) {
      let upstream: Deno.TcpConn;
      try {
        upstream = await Deno.connect({ hostname: "127.0.0.1", port: backend });
      } catch {
        client.close();
        continue;
      }
      const pair: Pair = { client, upstream, upstreamDone: Promise.resolve() };
      pairs.add(pair);
      pair.upstreamDone = track(pipe(upstream, client));
      track((async () => {
        // The client's bytes go to whichever upstream is current.
        const buffer = new Uint8Array(64 * 1024);
        try {
          for (;;) {
            const n = await client.read(buffer);
            if (n === null) break;
            let written = 0;
            while (written < n) written += await pair.upstream.write(buffer.subarray(written, n));
          }
        } catch {
          // the client went away
        }
        pairs.delete(pair);
        close(pair.upstream);
        close(client);
      })());
    }
  })());

  return {
    url: `redis://127.0.0.1:${port}`,
    async switchTo(next: number) {
      backend = next;
      for (const pair of pairs) {
        const old = pair.upstream;
        pair.upstream = await Deno.connect({ hostname: "127.0.0.1", port: next });
        close(old);
        await pair.upstreamDone;
        pair.upstreamDone = track(pipe(pair.upstream, pair.client));
      }
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const pair of pairs) {
        close(pair.client);
        close(pair.upstream);
      }
      pairs.clear();
      await Promise.all([...pumps, accepting]);
    },
  };
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
