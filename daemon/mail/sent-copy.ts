import { ImapFlow } from 'imapflow';
import type { Logger } from 'pino';
import type { Accounts } from '../store/accounts.js';
import { resolveFolders } from '../sync/imap-folders.js';
import type { MailboxLogins } from '../sync/oauth2-tokens.js';

/**
 * The optional copy of a relayed message in the user's Sent folder (`smtp.relay.appendToSent`),
 * for providers that do not keep one for mail sent over SMTP. This is the only write to a
 * mailbox mailsync can make, and only when the operator turned it on. It opens one short
 * connection of its own per message, next to the sync's.
 */

export interface SentCopySettings {
  allowPlaintext: boolean;
  tlsCa: Buffer | null;
  connectTimeoutMs: number;
}

export class SentCopier {
  readonly #accounts: Accounts;
  readonly #logins: MailboxLogins;
  readonly #settings: SentCopySettings;
  readonly #log: Logger;

  constructor(accounts: Accounts, logins: MailboxLogins, settings: SentCopySettings, log: Logger) {
    this.#accounts = accounts;
    this.#logins = logins;
    this.#settings = settings;
    this.#log = log;
  }

  /** Appends `raw` to the user's Sent folder, marked \Seen. Returns the folder, or null when the user has no IMAP consent. */
  async copy(userId: string, raw: Buffer): Promise<string | null> {
    const mbx = await this.#accounts.getMailbox(userId);
    if (!mbx) return null;
    const { auth } = await this.#logins.login(userId, 'imap');
    const s = this.#settings;
    const client = new ImapFlow({
      host: mbx.imap.host,
      port: mbx.imap.port,
      secure: mbx.imap.secure,
      doSTARTTLS: mbx.imap.secure ? undefined : s.allowPlaintext ? undefined : true,
      auth: 'pass' in auth ? { user: auth.user, pass: auth.pass } : { user: auth.user, accessToken: auth.accessToken },
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
