/**
 * Reads a JWT's `exp` without verifying it: the client only needs to know when to refresh.
 *
 * @module
 */

/**
 * The `exp` claim of a JWT (seconds since the Unix epoch), decoded from its payload without
 * checking the signature.
 *
 * @param token A compact JWT (`header.payload.signature`).
 * @returns `exp`, or `undefined` when the token is not a JWT or has no numeric `exp`.
 */
export function jwtExpiry(token: string): number | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const base64 = parts[1].replaceAll("-", "+").replaceAll("_", "/");
    const binary = atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "="));
    const bytes = Uint8Array.from(binary, (char) => char.charCodeAt(0));
    const payload: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof payload !== "object" || payload === null) return undefined;
    const exp = (payload as { exp?: unknown }).exp;
    return typeof exp === "number" && Number.isFinite(exp) ? exp : undefined;
  } catch {
    return undefined;
  }
}
