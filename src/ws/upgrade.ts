/**
 * `GET /ws`: the checks that answer before an upgrade (origin 403, subprotocol 400, header
 * token 401), then `Deno.upgradeWebSocket` and the hand-over to a {@link ConnectionActor}. The
 * only file that calls `Deno.upgradeWebSocket` or touches a Deno socket.
 *
 * @module
 */
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import { CloseCode, PROTOCOL_V1 } from "../protocol/mod.ts";
import { ConnectionActor, InvalidTokenError } from "../connection/mod.ts";
import type {
  ConnectionActorDeps,
  Principal,
  ServerGate,
  SocketPort,
  TokenVerifier,
} from "../connection/mod.ts";
import { isOriginAllowed } from "./origin_policy.ts";
import type { OriginPolicy } from "./origin_policy.ts";
import { parseProtocolOffer } from "./protocol_offer.ts";

/** What the upgrade route needs. */
export interface UpgradeDeps {
  readonly actorDeps: ConnectionActorDeps;
  readonly verifier: TokenVerifier;
  readonly gate: ServerGate;
  readonly origins: OriginPolicy;
  /** Seconds between pings of an idle socket; 0 disables. */
  readonly heartbeatSeconds: number;
  readonly log: Logger;
  /** Told of each actor made, so the server can count and drain them. */
  readonly onActor: (actor: ConnectionActor) => void;
  /** True when the process holds as many connections as it may (new ones close 1013). */
  readonly atCapacity?: () => boolean;
}

/**
 * Answers one `GET /ws` request.
 *
 * @param request The upgrade request.
 * @param deps The route's dependencies.
 * @returns A 101 response, or an HTTP error before any upgrade.
 */
export async function handleUpgrade(request: Request, deps: UpgradeDeps): Promise<Response> {
  // Deno makes the request's headers unreadable once upgraded: read them all first.
  const headers = request.headers;
  if (headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return jsonError(426, "upgrade_required", "This endpoint only accepts WebSocket upgrades");
  }
  if (!isOriginAllowed(headers.get("origin"), headers.get("host"), deps.origins)) {
    return jsonError(403, "origin_refused", "Origin not allowed");
  }
  const offer = parseProtocolOffer(headers.get("sec-websocket-protocol"));
  if (offer.entries.length > 0 && !offer.hasV1) {
    return jsonError(400, "unsupported_protocol", `Offer must include ${PROTOCOL_V1}`);
  }
  if (offer.bearerTokens.length > 1) {
    return jsonError(400, "bad_protocol_offer", "Offer at most one bearer token");
  }

  let headerPrincipal: Principal | undefined;
  let closeAtOnce: { code: CloseCode; reason: string } | undefined;
  const authorization = headers.get("authorization");
  if (authorization !== null) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match) return unauthorized("Authorization must be Bearer <token>");
    try {
      headerPrincipal = await deps.verifier.verify(match[1]);
    } catch (error) {
      if (error instanceof InvalidTokenError) return unauthorized(error.message);
      // A key source that cannot be reached is not the client's fault: accept, then 1013.
      deps.log.warn("header token could not be verified", { error: errorMessage(error) });
      closeAtOnce = { code: CloseCode.TryAgainLater, reason: "Token verification unavailable" };
    }
  }
  if (deps.gate.draining()) {
    closeAtOnce = { code: CloseCode.ServiceRestart, reason: "Server restarting" };
  } else if (!deps.gate.dependenciesReady()) {
    closeAtOnce ??= { code: CloseCode.TryAgainLater, reason: "Dependencies not ready" };
  } else if (deps.atCapacity?.()) {
    closeAtOnce ??= { code: CloseCode.TryAgainLater, reason: "Server at capacity" };
  }

  const { socket, response } = Deno.upgradeWebSocket(request, {
    idleTimeout: deps.heartbeatSeconds,
  });
  if (offer.hasV1) response.headers.set("sec-websocket-protocol", PROTOCOL_V1);

  const actor = new ConnectionActor(deps.actorDeps, socketPort(socket), {
    headerPrincipal,
    protocolToken: offer.bearerTokens[0],
  });
  deps.onActor(actor);
  socket.onopen = () => actor.opened();
  socket.onmessage = (event) => actor.receive(event.data);
  socket.onclose = (event) => actor.socketClosed(event.code, event.reason);
  socket.onerror = () => actor.socketErrored();
  // Accepted, then closed, so that browsers see the code (docs/protocol.md#close-codes).
  if (closeAtOnce) actor.close(closeAtOnce.code, closeAtOnce.reason);
  return response;
}

function socketPort(socket: WebSocket): SocketPort {
  return {
    get readyState() {
      return socket.readyState;
    },
    get bufferedAmount() {
      return socket.bufferedAmount;
    },
    send: (data) => socket.send(data),
    close: (code, reason) => socket.close(code, reason),
  };
}

function jsonError(
  status: number,
  code: string,
  message: string,
  init: HeadersInit = {},
): Response {
  return Response.json({ error: { code, message } }, { status, headers: init });
}

function unauthorized(message: string): Response {
  return jsonError(401, "unauthorized", message, {
    "www-authenticate": 'Bearer error="invalid_token"',
  });
}
