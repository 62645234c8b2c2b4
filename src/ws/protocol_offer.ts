/**
 * Reads a `Sec-WebSocket-Protocol` offer: the entries, the `agentsocket.v1` check and the
 * `bearer.<jwt>` token. Written by hand because Deno 2.9.6's `protocol` option answers HTTP 500
 * to a valid offer without a space after the comma, and a substring test would also match
 * `agentsocket.v10`.
 *
 * @module
 */
import { BEARER_PROTOCOL_PREFIX, PROTOCOL_V1 } from "../protocol/mod.ts";

/** What an offer holds. */
export interface ProtocolOffer {
  /** Every entry, trimmed, in order. */
  readonly entries: readonly string[];
  /** Whether `agentsocket.v1` is one of them (exactly). */
  readonly hasV1: boolean;
  /** The tokens of `bearer.<jwt>` entries. */
  readonly bearerTokens: readonly string[];
}

/**
 * Parses a `Sec-WebSocket-Protocol` header value.
 *
 * @param header The header, or null when absent.
 */
export function parseProtocolOffer(header: string | null): ProtocolOffer {
  const entries = (header ?? "").split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  return {
    entries,
    hasV1: entries.includes(PROTOCOL_V1),
    bearerTokens: entries
      .filter((e) => e.startsWith(BEARER_PROTOCOL_PREFIX))
      .map((e) => e.slice(BEARER_PROTOCOL_PREFIX.length))
      .filter((t) => t.length > 0),
  };
}
