import crypto from 'node:crypto';
import type { Accounts } from '../store/accounts.js';
import { OAuth2Error, type MailboxLogins } from '../sync/oauth2-tokens.js';
import type { RelayTarget } from './smtp-transport.js';

/**
 * Who may send through the relay, and through which server: a user's own `smtp` settings from
 * their consent (password, or an OAuth2 token kept fresh by MailboxLogins), or else the
 * configured smarthost. Anyone else is refused — the relay is never open.
 */

export interface SmarthostSettings {
  host: string;
  port: number;
  secure: boolean;
  user: string;
  pass: string;
}

/** `retry`: the failure may pass (the token endpoint was unreachable), so the message waits. */
export type Resolution = { ok: true; target: RelayTarget } | { ok: false; reason: string; retry: boolean };

const fingerprint = (s: string) => crypto.createHash('sha256').update(s).digest('hex').slice(0, 16);

export class RelayTargets {
  readonly #accounts: Accounts;
  readonly #logins: MailboxLogins;
  readonly #smarthost: SmarthostSettings;
  readonly #normalise: (a: string) => string;

  constructor(accounts: Accounts, logins: MailboxLogins, smarthost: SmarthostSettings, normalise: (a: string) => string) {
    this.#accounts = accounts;
    this.#logins = logins;
    this.#smarthost = smarthost;
    this.#normalise = normalise;
  }

  /** Why this user cannot send through the relay, or null when they can. Reads no secret. */
  async refusal(userId: string): Promise<string | null> {
    if (!(await this.#accounts.getUser(userId))) return `no user ${userId} is registered`;
    if ((await this.#accounts.getMailbox(userId))?.smtp || this.#smarthost.host) return null;
    return `user ${userId} has given no smtp settings with their mailbox consent and no smarthost is configured`;
  }

  /**
   * Where this user's mail goes out and the login to use, or why it cannot. `rejected` names an
   * access token the server just refused, so a fresh one is fetched.
   */
  async resolve(userId: string, opts: { rejected?: string } = {}): Promise<Resolution> {
    const why = await this.refusal(userId);
    if (why) return { ok: false, reason: why, retry: false };
    const mbx = await this.#accounts.getMailbox(userId);
    if (mbx?.smtp) {
      try {
        const { auth } = await this.#logins.login(userId, 'smtp', opts);
        const s = mbx.smtp;
        // a refreshed token is a new key: the next send opens a pool with it
        const key = `user:${userId}:${mbx.generation}:${'accessToken' in auth ? fingerprint(auth.accessToken) : 'password'}`;
        return { ok: true, target: { key, host: s.host, port: s.port, secure: s.secure, auth } };
      } catch (err) {
        if (err instanceof OAuth2Error) return { ok: false, reason: `user ${userId}: ${err.message}`, retry: err.state === 'unreachable' };
        throw err;
      }
    }
    const h = this.#smarthost;
    return { ok: true, target: { key: 'smarthost', host: h.host, port: h.port, secure: h.secure, auth: h.user ? { user: h.user, pass: h.pass } : null } };
  }

  /** Users who own this address and can send (sorted, so the choice is stable). */
  async sendersFor(address: string): Promise<string[]> {
    if (!address) return [];
    const users = [...(await this.#accounts.usersByAddresses([this.#normalise(address)]))].sort();
    const out: string[] = [];
    for (const u of users) if ((await this.refusal(u)) === null) out.push(u);
    return out;
  }

  /** The envelope sender for a user: the submitted one when it is the user's, else their main address. */
  async envelopeFrom(userId: string, submitted: string): Promise<string> {
    const user = await this.#accounts.getUser(userId);
    if (!user) return submitted;
    const own = new Set(this.#accounts.userAddresses(user));
    return submitted && own.has(this.#normalise(submitted)) ? submitted : user.email;
  }
}
