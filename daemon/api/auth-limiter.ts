/**
 * Slows down token guessing: a remote address that fails authentication `maxFailures` times
 * within `windowMs` is refused (429) for `windowMs` from the failure that reached the limit —
 * every request, also one with a correct token, so a guess that happens to be right teaches
 * the guesser nothing until the block has passed. Successful requests are not counted and do
 * not reset the count: a client that knows the token never needs to fail.
 *
 * State is per address and bounded: past `maxAddresses` the address seen longest ago is
 * forgotten (an attacker with many addresses is not stopped by a per-address limit anyway; the
 * token's length is what stops guessing — this limit makes it slow and visible).
 */

export interface AuthLimiterOptions {
  /** Failures within the window that block the address; 0 turns the limit off. */
  maxFailures: number;
  windowMs: number;
  maxAddresses?: number;
}

interface AddressState {
  /** Times of the failures still inside the window, oldest first. */
  failures: number[];
  blockedUntil: number;
}

export class AuthFailureLimiter {
  readonly #opts: Required<AuthLimiterOptions>;
  readonly #now: () => number;
  readonly #byAddress = new Map<string, AddressState>();

  constructor(opts: AuthLimiterOptions, now: () => number = Date.now) {
    this.#opts = { maxAddresses: 10_000, ...opts };
    this.#now = now;
  }

  get enabled(): boolean {
    return this.#opts.maxFailures > 0 && this.#opts.windowMs > 0;
  }

  /** Milliseconds until `address` may make requests again; 0 when it may now. */
  blockedFor(address: string): number {
    const s = this.#byAddress.get(address);
    if (!s) return 0;
    const left = s.blockedUntil - this.#now();
    return left > 0 ? left : 0;
  }

  /**
   * Counts a failed authentication. Returns how long the address is now blocked, in
   * milliseconds: above 0 when this failure reached the limit.
   */
  fail(address: string): number {
    if (!this.enabled) return 0;
    const now = this.#now();
    let s = this.#byAddress.get(address);
    if (s) this.#byAddress.delete(address); // re-inserted below: Map order is least recently seen first
    else s = { failures: [], blockedUntil: 0 };
    const since = now - this.#opts.windowMs;
    s.failures = s.failures.filter((at) => at > since);
    s.failures.push(now);
    if (s.failures.length >= this.#opts.maxFailures) {
      s.blockedUntil = now + this.#opts.windowMs;
      s.failures = [];
    }
    this.#byAddress.set(address, s);
    this.#evict(now);
    return s.blockedUntil > now ? s.blockedUntil - now : 0;
  }

  /** Addresses with failures or a block, for tests and the size bound. */
  get size(): number {
    return this.#byAddress.size;
  }

  #evict(now: number): void {
    if (this.#byAddress.size <= this.#opts.maxAddresses) return;
    // first drop what no longer matters: no block, no failure inside the window
    const since = now - this.#opts.windowMs;
    for (const [address, s] of this.#byAddress) {
      if (s.blockedUntil <= now && !s.failures.some((at) => at > since)) this.#byAddress.delete(address);
    }
    for (const address of this.#byAddress.keys()) {
      if (this.#byAddress.size <= this.#opts.maxAddresses) break;
      this.#byAddress.delete(address);
    }
  }
}
