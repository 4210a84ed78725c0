import type { Accounts } from '../store/accounts.js';
import type { Store } from '../store/store.js';
import type { MailAuth, MailboxCredentials } from '../store/records.js';
import type { RelayAuth, RelayTarget } from './smtp-transport.js';

/**
 * Who may send through the relay, and through which server: a user's own `smtp` settings from
 * their consent, or else the configured smarthost. Anyone else is refused — the relay is never
 * open.
 */

export interface SmarthostSettings {
  host: string;
  port: number;
  secure: boolean;
  user: string;
  pass: string;
}

export type Resolution = { ok: true; target: RelayTarget } | { ok: false; reason: string };

export class RelayTargets {
  readonly #accounts: Accounts;
  readonly #store: Store;
  readonly #smarthost: SmarthostSettings;
  readonly #normalise: (a: string) => string;

  constructor(accounts: Accounts, store: Store, smarthost: SmarthostSettings, normalise: (a: string) => string) {
    this.#accounts = accounts;
    this.#store = store;
    this.#smarthost = smarthost;
    this.#normalise = normalise;
  }

  /** Where this user's mail goes out, or why it cannot. */
  async resolve(userId: string): Promise<Resolution> {
    const user = await this.#accounts.getUser(userId);
    if (!user) return { ok: false, reason: `no user ${userId} is registered` };
    const mbx = await this.#accounts.getMailbox(userId);
    if (mbx?.smtp) {
      const creds = this.#store.openSecret<MailboxCredentials>(mbx.sealedCredentials);
      const auth = relayAuth(creds.smtp);
      if (!auth.ok) return { ok: false, reason: `user ${userId}: ${auth.reason}` };
      const s = mbx.smtp;
      return { ok: true, target: { key: `user:${userId}:${mbx.generation}`, host: s.host, port: s.port, secure: s.secure, auth: auth.auth } };
    }
    const h = this.#smarthost;
    if (h.host) {
      return { ok: true, target: { key: 'smarthost', host: h.host, port: h.port, secure: h.secure, auth: h.user ? { user: h.user, pass: h.pass } : null } };
    }
    return { ok: false, reason: `user ${userId} has given no smtp settings with their mailbox consent and no smarthost is configured` };
  }

  /** Users who own this address and can send (sorted, so the choice is stable). */
  async sendersFor(address: string): Promise<string[]> {
    if (!address) return [];
    const users = [...(await this.#accounts.usersByAddresses([this.#normalise(address)]))].sort();
    const out: string[] = [];
    for (const u of users) if ((await this.resolve(u)).ok) out.push(u);
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

function relayAuth(auth: MailAuth | null): { ok: true; auth: RelayAuth } | { ok: false; reason: string } {
  if (!auth) return { ok: true, auth: null };
  if ('pass' in auth) return { ok: true, auth: { user: auth.user, pass: auth.pass } };
  if (auth.oauth2.accessToken) return { ok: true, auth: { user: auth.user, accessToken: auth.oauth2.accessToken } };
  return { ok: false, reason: 'the OAuth2 smtp login has no access token' };
}
