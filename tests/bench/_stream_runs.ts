/**
 * One run of the stream phase, as the load generator reads it: a `chat` over an agentsocket
 * connection read to its terminal event ({@link streamRun}), or the same chat completion asked
 * of the model server directly and read to `[DONE]` ({@link streamDirect}); and the check of
 * the load generator's clock against the model server's ({@link streamClock}).
 *
 * @module
 */
import type { ClockCheck } from "./_load_protocol.ts";
import {
  maxInWindow,
  MODEL_CLOCK_ROUTE,
  parseStamp,
  preciseNow,
  streamTail,
} from "./_stream_text.ts";

/** What one stream run gave. Times in ms. */
export interface StreamRunOutcome {
  /** Why the run did not end well (`agent_failed provider_unavailable`, `timeout`, …). */
  readonly failure?: string;
  /** `performance.now()` when its end arrived; NaN when it never did. */
  readonly endedAt: number;
  /** The model server wrote the first piece → it arrived here (NaN: never, or no stamp). */
  readonly firstPieceMs: number;
  /** Pieces of the reply received. */
  readonly pieces: number;
  readonly events: number;
  readonly deltaEvents: number;
  readonly bytes: number;
  /** `agent_delta` events a second over the run (NaN with fewer than two, or within 1 ms). */
  readonly deltaRate: number;
  /** The most `agent_delta` events within any 1,000 ms of their `ts`. */
  readonly deltaBusiestSecond: number;
  /** Set when the text does not check out. */
  readonly textMismatch?: string;
}

const EVENT_PREFIX = '{"type":"event",';
const TERMINAL = new Set(["agent_completed", "agent_failed", "agent_cancelled"]);
const CHAT_PATH = "/v1/chat/completions";

const tails = new Map<number, string>();
/** The reply's text after its first piece (the same for every run). */
function expectedTail(pieces: number): string {
  let tail = tails.get(pieces);
  if (tail === undefined) {
    tail = streamTail(pieces).join("");
    tails.set(pieces, tail);
  }
  return tail;
}

/** Pieces in a reply's text: its stamped first piece and the ` w<n>` pieces. */
function countPieces(text: string): number {
  return (parseStamp(text) === undefined ? 0 : 1) + text.split(" w").length - 1;
}

/** Resolves with a promise's value, or `fallback` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const result = await Promise.race([
    promise,
    new Promise<T>((resolve) => timer = setTimeout(() => resolve(fallback), ms)),
  ]);
  clearTimeout(timer);
  return result;
}

/**
 * Sends one `chat` on an open agentsocket connection and reads its events to the terminal one:
 * the first `agent_delta`'s latency from its stamp, every `agent_delta`'s text and `ts`, and the
 * terminal `data.text`, checked against both.
 */
export async function streamRun(
  ws: WebSocket,
  closed: Promise<CloseEvent>,
  options: {
    readonly id: string;
    readonly pieces: number;
    readonly timeoutMs: number;
    /** Told when the first `agent_delta` arrived, or the run ended without one. */
    readonly onFirstPiece?: () => void;
  },
): Promise<StreamRunOutcome> {
  const texts: string[] = [];
  const times: number[] = [];
  let firstPieceMs = NaN;
  let events = 0;
  let bytes = 0;
  let endedAt = NaN;
  let terminal: { name: string; text: unknown } | undefined;
  const done = Promise.withResolvers<string | undefined>();
  ws.onmessage = (message) => {
    const received = preciseNow();
    const data = message.data as string;
    if (!data.startsWith(EVENT_PREFIX)) {
      const frame = JSON.parse(data);
      if (frame.type === "error") done.resolve(`error ${frame.code}`);
      return;
    }
    events++;
    bytes += data.length;
    const event = JSON.parse(data) as { name: string; data: Record<string, unknown>; ts: string };
    if (event.name === "agent_delta") {
      const text = String(event.data.text);
      if (texts.length === 0) {
        firstPieceMs = received - (parseStamp(text) ?? NaN);
        options.onFirstPiece?.();
      }
      texts.push(text);
      times.push(Date.parse(event.ts));
    } else if (TERMINAL.has(event.name)) {
      endedAt = performance.now();
      terminal = { name: event.name, text: event.data.text };
      const error = event.data.error as { code?: string } | undefined;
      done.resolve(event.name === "agent_completed" ? undefined : `${event.name} ${error?.code}`);
    }
  };
  closed.then((event) => done.resolve(`close ${event.code}`));
  ws.send(JSON.stringify({ type: "chat", id: options.id, text: "benchmark message" }));
  const failure = await within(done.promise, options.timeoutMs, "timeout");
  ws.onmessage = null;
  if (texts.length === 0) options.onFirstPiece?.();

  const text = texts.join("");
  const stamp = /^\[t=[\d.]+\] /.exec(text)?.[0];
  let textMismatch: string | undefined;
  if (terminal === undefined) textMismatch = "no terminal event";
  else if (terminal.text !== text) {
    textMismatch = `${terminal.name} data.text (${String(terminal.text).length} chars) is not ` +
      `the ${texts.length} agent_delta texts concatenated (${text.length} chars): ` +
      divergence(String(terminal.text), text);
  } else if (stamp === undefined) textMismatch = "the first agent_delta has no time stamp";
  else if (text !== stamp + expectedTail(options.pieces)) {
    textMismatch = `the text (${text.length} chars) is not the model's reply ` +
      `(${stamp.length + expectedTail(options.pieces).length} chars)`;
  }
  const span = times.length > 1 ? times[times.length - 1] - times[0] : 0;
  return {
    failure: failure ?? (textMismatch === undefined ? undefined : "text mismatch"),
    endedAt,
    firstPieceMs,
    pieces: textMismatch === undefined ? options.pieces : countPieces(text),
    events,
    deltaEvents: texts.length,
    bytes,
    deltaRate: span > 0 ? (times.length - 1) / (span / 1000) : NaN,
    deltaBusiestSecond: maxInWindow(times, 1000),
    textMismatch,
  };
}

/** Where two texts part: the offset and a few characters of each from there. */
export function divergence(a: string, b: string): string {
  let at = 0;
  while (at < a.length && at < b.length && a[at] === b[at]) at++;
  const from = Math.max(0, at - 12);
  return `from offset ${at}: ${JSON.stringify(a.slice(from, at + 24))} vs ${
    JSON.stringify(b.slice(from, at + 24))
  }`;
}

/** The SSE form of a text piece's start, as the model server writes it. */
const PIECE_MARKER = '"delta":{"content":"';
const DONE_MARKER = "data: [DONE]";

/**
 * Asks the model server for one chat completion and reads it to `[DONE]`: the first piece's
 * latency from its stamp, and the pieces (counted in the SSE text, not parsed).
 */
export async function streamDirect(
  modelUrl: string,
  options: { readonly pieces: number; readonly timeoutMs: number },
): Promise<StreamRunOutcome> {
  let firstPieceMs = NaN;
  let pieces = 0;
  let bytes = 0;
  let sawDone = false;
  let failure: string | undefined;
  try {
    const response = await fetch(modelUrl + CHAT_PATH, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "bench-model",
        messages: [{ role: "user", content: "benchmark message" }],
        stream: true,
        stream_options: { include_usage: true },
      }),
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    const decoder = new TextDecoder();
    let carry = ""; // the end of the previous read, where a marker may have begun
    for await (const chunk of response.body) {
      const received = preciseNow();
      bytes += chunk.byteLength;
      const text = carry + decoder.decode(chunk, { stream: true });
      for (let at = text.indexOf(PIECE_MARKER); at >= 0; at = text.indexOf(PIECE_MARKER, at + 1)) {
        if (at + PIECE_MARKER.length <= carry.length) continue; // counted with the last read
        if (pieces === 0) {
          firstPieceMs = received - (parseStamp(text.slice(at + PIECE_MARKER.length)) ?? NaN);
        }
        pieces++;
      }
      if (text.includes(DONE_MARKER)) sawDone = true;
      carry = text.slice(-64);
    }
  } catch (error) {
    failure = (error as Error).name === "TimeoutError" ? "timeout" : `error ${error}`;
  }
  const endedAt = sawDone ? performance.now() : NaN;
  if (failure === undefined && !sawDone) failure = "no [DONE]";
  return {
    failure,
    endedAt,
    firstPieceMs,
    pieces,
    events: 0,
    deltaEvents: 0,
    bytes,
    deltaRate: NaN,
    deltaBusiestSecond: 0,
    textMismatch: pieces === options.pieces
      ? undefined
      : `${pieces} pieces received of ${options.pieces}`,
  };
}

/**
 * Measures the model server's clock against this process's (see {@link ClockCheck}): 30
 * sequential exchanges after 3 to warm the connection, the one with the shortest round trip
 * kept.
 */
export async function streamClock(modelUrl: string): Promise<ClockCheck> {
  let best: ClockCheck = { offsetMs: NaN, rttMs: Infinity };
  for (let i = 0; i < 33; i++) {
    const before = preciseNow();
    const response = await fetch(modelUrl + MODEL_CLOCK_ROUTE);
    const { now } = await response.json() as { now: number };
    const after = preciseNow();
    if (i < 3) continue;
    if (after - before < best.rttMs) {
      best = { offsetMs: now - (before + after) / 2, rttMs: after - before };
    }
  }
  return best;
}
