import type { ImapFlow } from 'imapflow';
import type { Logger } from 'pino';
import type { LoginAuth, MailboxLogins } from './oauth2-tokens.js';
import { isAuthRefusal } from './provider-errors.js';

/**
 * Opening an IMAP connection for a user: within the per-user connection cap, logged in with
 * the password or a fresh OAuth2 access token. A token the server refuses is refreshed once and
 * the login tried again, so a token revoked or expired early costs one round trip, not a state
 * change.
 */

/** At most `max` IMAP connections per user at once, whoever opens them. */
export class ConnectionGate {
  readonly #max: number;
  readonly #open = new Map<string, number>();
  readonly #waiting = new Map<string, Array<() => void>>();

  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  get max(): number {
    return this.#max;
  }

  /** Waits for a free slot; the returned release is idempotent. Rejects when `signal` aborts. */
  async acquire(userId: string, signal: AbortSignal): Promise<() => void> {
    while ((this.#open.get(userId) ?? 0) >= this.#max) {
      if (signal.aborted) throw signal.reason ?? new Error('aborted');
      await new Promise<void>((resolve) => {
        const list = this.#waiting.get(userId) ?? [];
        const wake = () => {
          signal.removeEventListener('abort', wake);
          const l = this.#waiting.get(userId);
          if (l) l.splice(l.indexOf(wake) >>> 0, 1);
          resolve();
        };
        list.push(wake);
        this.#waiting.set(userId, list);
        signal.addEventListener('abort', wake, { once: true });
      });
    }
    if (signal.aborted) throw signal.reason ?? new Error('aborted');
    this.#open.set(userId, (this.#open.get(userId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.#open.get(userId) ?? 1) - 1;
      if (n <= 0) this.#open.delete(userId);
      else this.#open.set(userId, n);
      this.#waiting.get(userId)?.shift()?.();
    };
  }

  openFor(userId: string): number {
    return this.#open.get(userId) ?? 0;
  }
}

export interface ConnectOptions {
  userId: string;
  logins: MailboxLogins;
  gate: ConnectionGate;
  signal: AbortSignal;
  log: Logger;
  /** A new, unconnected client for this login. */
  make: (auth: LoginAuth) => ImapFlow;
  /** Told about each client as soon as it exists, so a stop can close it mid-connect. */
  onClient: (client: ImapFlow) => void;
}

/** Connects and logs in; the slot is given back when the client closes. */
export async function connectImap(o: ConnectOptions): Promise<ImapFlow> {
  const release = await o.gate.acquire(o.userId, o.signal);
  let rejected: string | undefined;
  try {
    for (let attempt = 0; ; attempt++) {
      const { auth, oauth2 } = await o.logins.login(o.userId, 'imap', { rejected });
      const client = o.make(auth);
      client.once('close', release);
      o.onClient(client);
      try {
        await client.connect();
        return client;
      } catch (err) {
        if (!oauth2 || attempt > 0 || !isAuthRefusal(err) || o.signal.aborted) throw err;
        // the server refused a token we believed valid (revoked early, clock skew): refresh once
        o.log.info('the IMAP server refused the access token; refreshing it and logging in again');
        client.removeListener('close', release);
        client.close();
        rejected = 'accessToken' in auth ? auth.accessToken : undefined;
      }
    }
  } catch (err) {
    release();
    throw err;
  }
}
