/**
 * The one error a store or engine throws when its backing service cannot be reached, so
 * callers answer `unavailable` (or close 1013) instead of treating it as a bug.
 *
 * @module
 */

/** A dependency (PostgreSQL, Redis) did not answer. */
export class DependencyUnavailableError extends Error {
  /** Which dependency failed, as named on `/health/ready`. */
  readonly dependency: string;
  constructor(dependency: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DependencyUnavailableError";
    this.dependency = dependency;
  }
}
