/**
 * Messages the server announced but did not deliver when fetched (B44: eventual consistency
 * after EXISTS; B40: a concurrent expunge). They are looked at again on a short schedule,
 * without moving the folder's watermark past them; one that is still listed but never
 * delivers is given up after the last try, so the folder is never stuck behind it.
 */

/** Delays before each new look; sum ≈ 49 s, well past any server's catch-up time. */
export const MISSING_RETRY_MS = [500, 1_000, 2_000, 5_000, 10_000, 30_000];

export class MissingUids {
  readonly #attempts = new Map<string, number>();

  /** The delay before looking at this message again, or null when it is to be given up. */
  next(key: string): number | null {
    const n = this.#attempts.get(key) ?? 0;
    if (n >= MISSING_RETRY_MS.length) {
      this.#attempts.delete(key);
      return null;
    }
    this.#attempts.set(key, n + 1);
    return MISSING_RETRY_MS[n]!;
  }

  /** Forgets a message that was delivered in the end (or a folder that was rebuilt). */
  clear(key: string): void {
    this.#attempts.delete(key);
  }

  get size(): number {
    return this.#attempts.size;
  }
}
