/**
 * A failure that stops start-up with one clear line (a failed migration, an unusable key).
 *
 * @module
 */

/** Start-up cannot go on; `message` is the one line printed before exiting 1. */
export class StartupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StartupError";
  }
}
