/**
 * Opaque paging cursors shared by the stores: base64url of `<kind>.<position>`, where the
 * position is the row's monotonic insertion number (a PostgreSQL identity column, a counter in
 * memory). Keyset paging on it stays stable under concurrent inserts.
 *
 * @module
 */

/** What a cursor pages through: `t` threads, `m` messages. */
export type CursorKind = "t" | "m";

const MAX_POSITION = 2n ** 63n - 1n;
const CURSOR_TEXT = /^([tm])\.(0|[1-9][0-9]{0,18})$/;

/**
 * Encodes a position as an opaque cursor.
 *
 * @param kind What the cursor pages through.
 * @param position The position of the last item of the page (exclusive bound of the next).
 * @returns A URL-safe string.
 */
export function encodeCursor(kind: CursorKind, position: bigint | number | string): string {
  const text = `${kind}.${BigInt(position)}`;
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/**
 * Decodes a cursor made by {@link encodeCursor} for the same kind.
 *
 * @param kind What the caller pages through.
 * @param cursor The client's `before` value.
 * @returns The position it names.
 * @throws {RangeError} When the cursor is malformed or was made for another listing.
 */
export function decodeCursor(kind: CursorKind, cursor: string): bigint {
  const shown = String(cursor);
  const invalid = () =>
    new RangeError(
      `Cannot page: "before" must be a nextCursor from a previous page, received ${
        JSON.stringify(shown.length > 40 ? `${shown.slice(0, 40)}…` : shown)
      }`,
    );
  if (typeof cursor !== "string" || !/^[A-Za-z0-9_-]{1,40}$/.test(cursor)) throw invalid();
  let text: string;
  try {
    text = atob(cursor.replaceAll("-", "+").replaceAll("_", "/"));
  } catch {
    throw invalid();
  }
  const match = CURSOR_TEXT.exec(text);
  if (match === null || match[1] !== kind) throw invalid();
  const position = BigInt(match[2]);
  if (position > MAX_POSITION) throw invalid();
  return position;
}

/**
 * Checks a page size.
 *
 * @param limit The requested number of items.
 * @throws {RangeError} When it is not a positive integer.
 */
export function checkLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`Cannot page: "limit" must be a positive integer, received ${limit}`);
  }
}
