/**
 * The client's token: the one given, or one from `getToken`, renewed after a 4401 or a 401 and
 * refreshed on the open connection before it expires (`docs/protocol.md#tokens`).
 *
 * @module
 */
import { jwtExpiry } from "./jwt_expiry.ts";
import type { TimerGroup } from "./timer_group.ts";
import type { TimerHandle } from "./timers.ts";

/** The connection a {@link TokenSource} refreshes: it sends `refresh` only while ready. */
export interface RefreshChannel {
  /** Whether the connection is ready. */
  isReady(): boolean;
  /** Sends `{"type":"refresh","token"}`; `false` when it could not be sent. */
  sendRefresh(token: string): boolean;
}

/** Options of {@link TokenSource}. */
export interface TokenSourceOptions {
  /** A token to use as is. */
  readonly token?: string;
  /** Returns a fresh token. */
  readonly getToken?: () => string | Promise<string>;
  /** Refresh this long before `exp`. */
  readonly refreshBeforeExpiryMs: number;
  readonly timers: TimerGroup;
  readonly channel: RefreshChannel;
}

/** Holds the token; the only writer of it. */
export class TokenSource {
  #o: TokenSourceOptions;
  #token?: string;
  #stale = false;
  #refreshTimer?: TimerHandle;
  /** The token sent in a `refresh` not answered yet. */
  #refreshing?: string;

  /** @throws {TypeError} When neither `token` nor `getToken` is given. */
  constructor(options: TokenSourceOptions) {
    if (options.token === undefined && options.getToken === undefined) {
      throw new TypeError('Cannot connect: "token" or "getToken" is required');
    }
    this.#o = options;
    this.#token = options.token;
  }

  /** Whether a fresh token can be had (`getToken` was given). */
  get renewable(): boolean {
    return this.#o.getToken !== undefined;
  }

  /**
   * The token to use now: asks `getToken` when there is none yet or the last was refused.
   *
   * @throws {TypeError} When `getToken` returns something other than a non-empty string.
   */
  async current(): Promise<string> {
    const getToken = this.#o.getToken;
    if ((this.#token === undefined || this.#stale) && getToken) {
      const token = await getToken();
      if (typeof token !== "string" || token === "") {
        throw new TypeError("getToken() must return a non-empty string");
      }
      this.#token = token;
      this.#stale = false;
    }
    return this.#token!;
  }

  /** The server refused the token (4401, or 401 over REST): the next use asks for a fresh one. */
  invalidate(): void {
    this.#stale = true;
  }

  /** Arms the refresh for `exp` (seconds; by default the current token's). */
  scheduleRefresh(exp: number | undefined = this.#token ? jwtExpiry(this.#token) : undefined) {
    this.#o.timers.clear(this.#refreshTimer);
    this.#refreshTimer = undefined;
    if (exp === undefined || !this.#o.getToken) return;
    const at = exp * 1000 - this.#o.refreshBeforeExpiryMs;
    this.#refreshTimer = this.#o.timers.set(() => {
      this.#refreshTimer = undefined;
      // A wait longer than a timer can take fires early: wait again.
      if (this.#o.timers.now() < at) return this.scheduleRefresh(exp);
      void this.#refresh(exp);
    }, at - this.#o.timers.now());
  }

  /** The server answered `refreshed`: the token sent is now the connection's. */
  refreshed(exp: number): void {
    if (this.#refreshing !== undefined) this.#token = this.#refreshing;
    this.#refreshing = undefined;
    this.scheduleRefresh(exp);
  }

  /** The connection is gone: no refresh until the next one is ready. */
  stop(): void {
    this.#o.timers.clear(this.#refreshTimer);
    this.#refreshTimer = undefined;
    this.#refreshing = undefined;
  }

  async #refresh(currentExp: number): Promise<void> {
    const { getToken, channel } = this.#o;
    if (!channel.isReady() || !getToken) return;
    let token: string;
    try {
      token = await getToken();
    } catch {
      return; // the server closes with 4401 at exp; the reconnect asks for a token again
    }
    const exp = typeof token === "string" ? jwtExpiry(token) : undefined;
    // A token that does not outlive the current one cannot extend the connection.
    if (exp === undefined || exp <= currentExp || !channel.isReady()) return;
    if (channel.sendRefresh(token)) this.#refreshing = token;
  }
}
