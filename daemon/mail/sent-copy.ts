import { ImapFlow } from 'imapflow';
import type { Logger } from 'pino';
import type { Accounts } from '../store/accounts.js';
import type { Store } from '../store/store.js';
import type { MailboxCredentials } from '../store/records.js';
import { resolveFolders } from '../sync/imap-folders.js';

/**
 * The optional copy of a relayed message in the user's Sent folder (`smtp.relay.appendToSent`),
 * for providers that do not keep one for mail sent over SMTP. This is the only write to a
 * mailbox mailsync can make, and only when the operator turned it on.
 */

export interface SentCopySettings {
  allowPlaintext: boolean;
  tlsCa: Buffer | null;
  connectTimeoutMs: number;
}

export class SentCopier {
  readonly #accounts: Accounts;
  readonly #store: Store;
  readonly #settings: SentCopySettings;
  readonly #log: Logger;

  constructor(accounts: Accounts, store: Store, settings: SentCopySettings, log: Logger) {
    this.#accounts = accounts;
    this.#store = store;
    this.#settings = settings;
    this.#log = log;
  }

  /** Appends `raw` to the user's Sent folder, marked \Seen. Returns the folder, or null when the user has no IMAP consent. */
  async copy(userId: string, raw: Buffer): Promise<string | null> {
    const mbx = await this.#accounts.getMailbox(userId);
    if (!mbx) return null;
    const creds = this.#store.openSecret<MailboxCredentials>(mbx.sealedCredentials);
    if (!('pass' in creds.imap)) return null;
    const s = this.#settings;
    const client = new ImapFlow({
      host: mbx.imap.host,
      port: mbx.imap.port,
      secure: mbx.imap.secure,
      doSTARTTLS: mbx.imap.secure ? undefined : s.allowPlaintext ? undefined : true,
      auth: { user: creds.imap.user, pass: creds.imap.pass },
      logger: false,
      clientInfo: { name: 'mailsync' },
      connectionTimeout: s.connectTimeoutMs,
      greetingTimeout: s.connectTimeoutMs,
      tls: s.tlsCa ? { ca: s.tlsCa } : {},
    });
    client.on('error', (err: Error) => this.#log.debug({ err: { message: err.message } }, 'imap connection error while copying to Sent'));
    await client.connect();
    try {
      const sent = (await resolveFolders(client)).find((f) => f.role === 'sent');
      if (!sent) throw new Error('the mailbox has no Sent folder');
      await client.append(sent.path, raw, ['\\Seen']);
      return sent.path;
    } finally {
      await client.logout().catch(() => client.close());
    }
  }
}
