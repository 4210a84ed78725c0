import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import type { Accounts } from '../store/accounts.js';
import type { Threads } from '../store/threads.js';
import type { Ingestor } from '../sync/ingestor.js';
import { headerValues, parseHeaderBlock, type HeaderField } from '../threads/headers.js';
import { parseAddressList } from '../threads/addresses.js';
import { baseOptions, readMessage, smtpError, SmtpListener, type ListenerTls } from './smtp-listener.js';

/**
 * The limited-sync intake: organisations that keep IMAP off forward the replies of ATS threads
 * here with a mail-flow rule. A message is matched by its id headers exactly as on the IMAP
 * path; what belongs to a tracked thread is stored for the user it was forwarded from, and
 * everything else is accepted and dropped unread, so a rule that forwards too much leaks
 * nothing into the store.
 */

export type IntakeOutcome = 'stored' | 'duplicate' | 'dropped' | 'unattributed' | 'refused';

export interface IntakeOptions {
  maxMessageBytes: number;
  maxRecipients: number;
  tls: ListenerTls | null;
}

export interface IntakeDeps {
  ingestor: Ingestor;
  threads: Threads;
  accounts: Accounts;
  normalise: (a: string) => string;
  log: Logger;
  observe?: (outcome: IntakeOutcome) => void;
}

/**
 * More Received fields than this and the message is going round in circles. RFC 5321 §6.3
 * asks for a limit of at least 100 hops; real paths, forwarding included, stay under 30.
 */
export const MAX_HOPS = 100;

/**
 * Where a forwarded message says whom it was forwarded from, most reliable first: the envelope
 * (a route that keeps the original recipient), then the headers forwarders add, then the
 * visible recipients, and last the sender (a forwarded copy of the user's own reply).
 */
export const ATTRIBUTION_HEADERS = ['delivered-to', 'x-forwarded-to', 'x-original-to', 'to', 'cc', 'from'] as const;

/** Address groups to try, in order. Pure. */
export function attributionSources(envelopeRecipients: string[], headers: HeaderField[]): string[][] {
  const groups = [envelopeRecipients];
  for (const h of ATTRIBUTION_HEADERS) groups.push(parseAddressList(headerValues(headers, h).join(', ')).map((a) => a.address));
  return groups.map((g) => g.filter(Boolean));
}

export class IntakeServer {
  readonly #listener: SmtpListener;
  readonly #opts: IntakeOptions;
  readonly #deps: IntakeDeps;

  constructor(opts: IntakeOptions, deps: IntakeDeps) {
    this.#opts = opts;
    this.#deps = deps;
    this.#listener = new SmtpListener('intake', {
      ...baseOptions(opts.tls, 'mailsync intake'),
      // Providers forward without logging in; the intake relays nothing, it only stores
      // replies to threads it already tracks.
      authOptional: true,
      disabledCommands: opts.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      size: opts.maxMessageBytes,
      rejectOversized: true,
      maxRecipients: opts.maxRecipients,
      onData: (stream, session, cb) => {
        this.#onData(stream, session).then((text) => cb(null, text), (err: Error) => {
          const code = (err as { responseCode?: number }).responseCode;
          if (code === undefined) {
            // our fault (the store): the forwarding server keeps the message and tries again
            this.#deps.log.error({ err, session: session.id }, 'intake failed inside mailsync');
            cb(smtpError(451, '4.3.0 Temporary failure inside mailsync, try again later'));
          } else cb(err);
          this.#deps.observe?.('refused');
        });
      },
    }, deps.log);
  }

  get port(): number {
    return this.#listener.port;
  }

  start(host: string, port: number): Promise<number> {
    return this.#listener.start(host, port);
  }

  stop(): Promise<void> {
    return this.#listener.stop();
  }

  async #onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const raw = await readMessage(stream, this.#opts.maxMessageBytes);
    if (!raw) throw smtpError(552, `5.3.4 Message exceeds the size limit of ${this.#opts.maxMessageBytes} bytes`);
    const headers = parseHeaderBlock(raw);
    const log = this.#deps.log.child({ session: session.id });
    if (headerValues(headers, 'received').length > MAX_HOPS) {
      log.warn({ size: raw.length }, 'intake refused a message that has looped');
      throw smtpError(554, '5.4.6 Routing loop detected: too many Received fields');
    }
    const { ingestor } = this.#deps;
    // mail without a Message-ID is keyed by its content, so the same bytes twice are one message
    const rec = ingestor.headerRecord(0, raw, raw.length, null, `intake:${crypto.createHash('sha256').update(raw).digest('hex')}`);
    if (!(await ingestor.decide([rec])).has(0)) {
      this.#deps.observe?.('dropped');
      log.info({ size: raw.length }, 'intake dropped a message that belongs to no tracked thread (not stored)');
      return '2.0.0 Ok';
    }
    const userId = await this.#attribute(session.envelope.rcptTo.map((r) => r.address), headers, rec.keys);
    if (!userId) {
      this.#deps.observe?.('unattributed');
      log.warn({ size: raw.length }, 'intake dropped a tracked reply: no registered user among its recipients (is the user registered with the address the rule forwards from?)');
      return '2.0.0 Ok';
    }
    const result = await ingestor.ingest(rec, raw, true, { userId, folder: 'intake', location: null, origin: 'ats' });
    if (result.status === 'stored') {
      this.#deps.observe?.('stored');
      log.info({ userId, threadId: result.threadId, messageKey: result.key }, 'intake stored a reply');
    } else {
      // the same message again (a second rule, a loop, a provider retry): stored once, one event
      this.#deps.observe?.(result.status === 'duplicate' ? 'duplicate' : 'dropped');
      log.info({ userId, status: result.status }, 'intake saw a message it already has');
    }
    return '2.0.0 Ok';
  }

  /** The registered user the message was forwarded from; else the one owner of its thread. */
  async #attribute(envelope: string[], headers: HeaderField[], keys: string[]): Promise<string | null> {
    const { accounts, normalise, threads } = this.#deps;
    for (const group of attributionSources(envelope, headers)) {
      for (const address of group) {
        const users = [...(await accounts.usersByAddresses([normalise(address)]))].sort();
        if (users.length) return users[0]!;
      }
    }
    const threadIds = [...new Set((await threads.lookup(keys)).values())];
    const owners = new Set<string>();
    for (const id of threadIds) for (const u of (await threads.getThread(id))?.ownerUserIds ?? []) owners.add(u);
    return owners.size === 1 ? [...owners][0]! : null;
  }
}
