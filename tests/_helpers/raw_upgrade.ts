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

/** Encodes one masked client text frame (RFC 6455 §5.2). */
export function maskedTextFrame(text: string): Uint8Array {
  const payload = new TextEncoder().encode(text);
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const length = payload.length;
  const header = length < 126
    ? [0x81, 0x80 | length]
    : length < 65536
    ? [0x81, 0x80 | 126, length >> 8, length & 0xff]
    : [
      0x81,
      0x80 | 127,
      0,
      0,
      0,
      0,
      (length >>> 24) & 0xff,
      (length >>> 16) & 0xff,
      (length >>> 8) & 0xff,
      length & 0xff,
    ];
  const frame = new Uint8Array(header.length + 4 + length);
  frame.set(header, 0);
  frame.set(mask, header.length);
  for (let i = 0; i < length; i++) frame[header.length + 4 + i] = payload[i] ^ mask[i % 4];
  return frame;
}

/**
 * Opens a WebSocket over raw TCP, sends `hello` and then never reads again: a client that
 * stopped reading. Close the returned connection to end it.
 */
export async function openNonReadingClient(port: number, token: string): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const request = [
    "GET /ws HTTP/1.1",
    `Host: 127.0.0.1:${port}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Protocol: agentsocket.v1",
    "",
    "",
  ].join("\r\n");
  await conn.write(new TextEncoder().encode(request));
  // Read the response head only (it arrives alone: the server sends nothing before hello).
  const buffer = new Uint8Array(4096);
  let head = "";
  while (!head.includes("\r\n\r\n")) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error("connection closed during the upgrade");
    head += new TextDecoder().decode(buffer.subarray(0, n));
  }
  if (!head.startsWith("HTTP/1.1 101")) {
    throw new Error(`upgrade refused: ${head.split("\r\n")[0]}`);
  }
  await conn.write(maskedTextFrame(JSON.stringify({ type: "hello", token })));
  return conn;
}
