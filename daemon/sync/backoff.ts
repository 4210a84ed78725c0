/**
 * Reconnect delays: exponential with jitter, capped, and reset only after a connection
 * stayed up for a while — a server that accepts and drops at once must not be hammered.
 */
export class Backoff {
  #failures = 0;
  readonly #minMs: number;
  readonly #maxMs: number;
  readonly #resetAfterMs: number;
  readonly #random: () => number;

  constructor(opts: { minMs: number; maxMs: number; resetAfterMs: number }, random: () => number = Math.random) {
    this.#minMs = opts.minMs;
    this.#maxMs = opts.maxMs;
    this.#resetAfterMs = opts.resetAfterMs;
    this.#random = random;
  }

  /** The connection ended after being up for `upMs` (0 when it never came up). */
  next(upMs: number, atLeastMs = 0): number {
    if (upMs >= this.#resetAfterMs) this.#failures = 0;
    const base = Math.min(this.#maxMs, this.#minMs * 2 ** this.#failures);
    this.#failures++;
    // "equal jitter": half fixed, half random, so the delay never collapses to zero
    const delay = base / 2 + (base / 2) * this.#random();
    return Math.round(Math.max(delay, atLeastMs));
  }

  get failures(): number {
    return this.#failures;
  }
}
