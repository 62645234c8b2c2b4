/**
 * Sends a WebSocket upgrade request byte for byte over TCP and reads the response head, so a
 * test controls every header (a client library would normalise them).
 *
 * @module
 */

/** The status and headers of an upgrade response. */
export interface RawResponse {
  readonly status: number;
  readonly headers: Headers;
}

/**
 * Requests an upgrade of `GET /ws` with the given extra headers.
 *
 * @param port The server's port on 127.0.0.1.
 * @param headers Extra request headers.
 */
export async function rawUpgrade(
  port: number,
  headers: Record<string, string>,
): Promise<RawResponse> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const lines = [
      "GET /ws HTTP/1.1",
      `Host: 127.0.0.1:${port}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      "",
      "",
    ];
    await conn.write(new TextEncoder().encode(lines.join("\r\n")));
    const buffer = new Uint8Array(16_384);
    let text = "";
    while (!text.includes("\r\n\r\n")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    const [head] = text.split("\r\n\r\n");
    const [statusLine, ...headerLines] = head.split("\r\n");
    const result = new Headers();
    for (const line of headerLines) {
      const i = line.indexOf(":");
      if (i > 0) result.append(line.slice(0, i).trim(), line.slice(i + 1).trim());
    }
    return { status: Number(statusLine.split(" ")[1]), headers: result };
  } finally {
    conn.close();
  }
}
