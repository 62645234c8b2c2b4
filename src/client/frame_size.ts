/**
 * The size of the frames the client sends, against the server's frame limit. A frame over the
 * limit closes the connection with 1009, and that close code is often lost while the client's
 * frames are still arriving (the client sees 1006), so the client measures every chat and
 * approve before sending and refuses what would not fit.
 *
 * @module
 */
import type { ClientFrame } from "../protocol/mod.ts";

/**
 * The frame limit assumed when `ready` does not carry `maxFrameBytes` (older servers): the
 * protocol's default, 64 KiB.
 */
export const DEFAULT_MAX_FRAME_BYTES = 65_536;

/** The size of a frame as sent, in UTF-8 bytes. */
export function frameBytes(frame: ClientFrame): number {
  return new TextEncoder().encode(JSON.stringify(frame)).length;
}
