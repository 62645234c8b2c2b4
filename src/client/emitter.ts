/**
 * A typed event emitter, the one the client and its parts share: listeners are called in the
 * order they were added, and a listener that throws is reported, never allowed to break the
 * caller (a page's bug must not break the connection).
 *
 * @module
 */

/** Listens to one event of a map `M`. */
export type Listener<M, K extends keyof M> = (detail: M[K]) => void;

/** Emits the events of `M` (event name → detail). */
export class Emitter<M> {
  #listeners = new Map<keyof M, Set<(detail: never) => void>>();

  /**
   * Listens to an event.
   *
   * @returns A function that removes the listener.
   */
  on<K extends keyof M>(type: K, listener: Listener<M, K>): () => void {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, set = new Set());
    set.add(listener as (detail: never) => void);
    return () => set.delete(listener as (detail: never) => void);
  }

  /** Calls every listener of `type` with `detail`; a listener's error is reported, not thrown. */
  emit<K extends keyof M>(type: K, detail: M[K]): void {
    for (const listener of [...this.#listeners.get(type) ?? []]) {
      try {
        (listener as Listener<M, K>)(detail);
      } catch (error) {
        reportError(error);
      }
    }
  }

  /** Removes every listener. */
  clear(): void {
    this.#listeners.clear();
  }
}
