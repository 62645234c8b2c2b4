/**
 * The `ALLOWED_ORIGINS` rule (`docs/protocol.md#handshake`): a browser upgrade from an origin not allowed is
 * refused with HTTP 403; an upgrade with no `Origin` (not a browser) is not refused for it.
 *
 * @module
 */

/** Options of {@link isOriginAllowed}. */
export interface OriginPolicy {
  /** Configured origins (`*` allows any); undefined means the environment's default. */
  readonly allowed?: readonly string[];
  /** Development allows any origin by default; production, only the request's own. */
  readonly production: boolean;
}

/**
 * Whether an upgrade may proceed as far as its `Origin` is concerned.
 *
 * @param origin The `Origin` header, or null.
 * @param host The request's `Host` header, or null.
 * @param policy The configured policy.
 */
export function isOriginAllowed(
  origin: string | null,
  host: string | null,
  policy: OriginPolicy,
): boolean {
  if (origin === null) return true;
  if (policy.allowed !== undefined) {
    return policy.allowed.includes("*") || policy.allowed.includes(origin);
  }
  if (!policy.production) return true;
  try {
    return host !== null && new URL(origin).host === host;
  } catch {
    return false;
  }
}
