/**
 * The steps between `hello` and `ready`, in the only safe order: verify every token offered,
 * count the connection against the user's limit, make the user's live subscription, and only
 * then read the catch-up (replay and active runs). Reading first and subscribing second would
 * lose any event published in between; subscribing first can only double one, which the actor
 * drops by seq.
 *
 * @module
 */
import type { CatchUp, EventEngine, EventListener, EventSubscription } from "../bus/mod.ts";
import { CloseCode, ConnectionCloseError } from "../protocol/mod.ts";
import type { HelloFrame } from "../protocol/mod.ts";
import { DependencyUnavailableError } from "../_util/dependency_unavailable_error.ts";
import { InvalidTokenError } from "./ports.ts";
import type { Principal, ServerGate, TokenVerifier } from "./ports.ts";

/** What the coordinator needs. */
export interface HandshakeDeps {
  readonly verifier: TokenVerifier;
  readonly engine: Pick<
    EventEngine,
    "subscribe" | "catchUp" | "acquireConnection" | "releaseConnection"
  >;
  readonly gate: ServerGate;
  /** @default 10 — beyond it the handshake closes with 4429. */
  readonly maxConnectionsPerUser: number;
}

/** One connection's handshake. */
export interface HandshakeRequest {
  readonly connectionId: string;
  readonly hello: HelloFrame;
  /** The principal of a valid `Authorization` header, verified before the upgrade. */
  readonly headerPrincipal?: Principal;
  /** The token offered as a `bearer.<jwt>` subprotocol entry. */
  readonly protocolToken?: string;
  /** Aborted when the connection closes or the handshake times out. */
  readonly signal: AbortSignal;
  /** Receives the user's live events from the moment the subscription is made. */
  readonly onEvent: EventListener;
  /**
   * Moves the connection's state, with the user it now belongs to; called in order, only while
   * the handshake is live.
   */
  readonly advance: (state: "authenticated" | "services_ready", principal: Principal) => void;
}

/** What a finished handshake holds; `release()` gives it all back (idempotent). */
export interface HandshakeResult {
  readonly principal: Principal;
  readonly catchUp: CatchUp;
  release(): void;
}

/** Runs the `hello` → `ready` steps for one connection at a time. */
export class HandshakeCoordinator {
  #deps: HandshakeDeps;

  constructor(deps: HandshakeDeps) {
    this.#deps = deps;
  }

  /**
   * Runs the handshake.
   *
   * @returns The principal, the catch-up read and a release handle.
   * @throws {ConnectionCloseError} 4401 for a missing, invalid or inconsistent token, 4429 over
   *   the user's connection limit, 1013 when a dependency is not ready or fails, 1012 while
   *   draining; or the signal's reason when aborted.
   */
  async run(request: HandshakeRequest): Promise<HandshakeResult> {
    const { gate, engine } = this.#deps;
    if (gate.draining()) throw new ConnectionCloseError(CloseCode.ServiceRestart, "Draining");
    if (!gate.dependenciesReady()) {
      throw new ConnectionCloseError(CloseCode.TryAgainLater, "Dependencies not ready");
    }
    const principal = await this.#authenticate(request);
    const userId = principal.userId;

    const resources = new Resources(engine, userId, request.connectionId);
    try {
      const acquired = await settle(
        engine.acquireConnection(userId, request.connectionId, this.#deps.maxConnectionsPerUser),
        request.signal,
        (late) => late && engine.releaseConnection(userId, request.connectionId).catch(() => {}),
      );
      if (!acquired) {
        throw new ConnectionCloseError(CloseCode.TooManyRequests, "Too many connections");
      }
      resources.slotHeld = true;
      request.advance("authenticated", principal);

      resources.subscription = await settle(
        engine.subscribe(userId, request.onEvent),
        request.signal,
        (late) => late.unsubscribe(),
      );
      const catchUp = await settle(engine.catchUp(userId, request.hello.resume), request.signal);
      request.advance("services_ready", principal);
      return { principal, catchUp, release: () => resources.release() };
    } catch (error) {
      resources.release();
      throw asCloseError(error, request.signal);
    }
  }

  async #authenticate(request: HandshakeRequest): Promise<Principal> {
    const tokens = [request.protocolToken, request.hello.token].filter(
      (t): t is string => t !== undefined,
    );
    if (tokens.length === 0 && request.headerPrincipal === undefined) {
      throw new ConnectionCloseError(CloseCode.Unauthorized, "Missing token");
    }
    let verified: Principal[];
    try {
      verified = await settle(
        Promise.all(tokens.map((token) => this.#deps.verifier.verify(token))),
        request.signal,
      );
    } catch (error) {
      if (error instanceof InvalidTokenError) {
        throw new ConnectionCloseError(CloseCode.Unauthorized, "Invalid token", { cause: error });
      }
      throw asCloseError(error, request.signal);
    }
    const principals = request.headerPrincipal ? [request.headerPrincipal, ...verified] : verified;
    const userId = principals[0].userId;
    if (principals.some((p) => p.userId !== userId)) {
      throw new ConnectionCloseError(CloseCode.Unauthorized, "Tokens name different users");
    }
    // The connection lives no longer than the shortest-lived token it was given.
    const exp = Math.min(...principals.map((p) => p.exp));
    return { userId, exp };
  }
}

/** What a handshake took, given back exactly once. */
class Resources {
  slotHeld = false;
  subscription?: EventSubscription;
  #released = false;
  #engine: HandshakeDeps["engine"];
  #userId: string;
  #connectionId: string;

  constructor(engine: HandshakeDeps["engine"], userId: string, connectionId: string) {
    this.#engine = engine;
    this.#userId = userId;
    this.#connectionId = connectionId;
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.subscription?.unsubscribe();
    if (this.slotHeld) {
      this.#engine.releaseConnection(this.#userId, this.#connectionId).catch(() => {
        // A shared engine expires a lost release on its own (docs/protocol.md#limits: a dead entry expires).
      });
    }
  }
}

/**
 * Awaits `promise` unless `signal` aborts first. When the abort wins, a value the promise
 * resolves with later is handed to `onLate`, so what it holds is given back.
 */
function settle<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  onLate?: (value: T) => unknown,
): Promise<T> {
  if (signal.aborted) {
    promise.then((value) => onLate?.(value), () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const onAbort = () => {
      if (done) return;
      done = true;
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        if (done) onLate?.(value);
        else {
          done = true;
          resolve(value);
        }
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        if (!done) {
          done = true;
          reject(error);
        }
      },
    );
  });
}

function asCloseError(error: unknown, signal: AbortSignal): unknown {
  if (error instanceof ConnectionCloseError) return error;
  if (signal.aborted && error === signal.reason) return error;
  if (error instanceof DependencyUnavailableError) {
    return new ConnectionCloseError(CloseCode.TryAgainLater, "Dependency unavailable", {
      cause: error,
    });
  }
  // An unexpected failure of a dependency during the handshake is still a dependency failure
  // from the client's point of view: retry later (docs/protocol.md#handshake), never 1011.
  return new ConnectionCloseError(CloseCode.TryAgainLater, "Handshake failed", { cause: error });
}
