/**
 * Retry delays as data: exponential from `initialDelayMs`, capped at `maxDelayMs`, each
 * shortened by a random share up to `jitter` so many events failing together do not retry
 * together ("full jitter" would also work; a bounded share keeps the schedule predictable
 * for operators reading the docs).
 */
export interface RetryPolicy {
  attempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
  jitter: number;
}

/** Delay before attempt `attempt + 1`, after `attempt` failed attempts (attempt ≥ 1). */
export function retryDelay(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const base = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.max(0, Math.round(base * (1 - policy.jitter * random())));
}

/** The whole schedule without jitter, for docs and `config check`. */
export function retrySchedule(policy: RetryPolicy): number[] {
  return Array.from({ length: Math.max(0, policy.attempts - 1) }, (_, i) => retryDelay({ ...policy, jitter: 0 }, i + 1));
}
