import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { decodeEncodedWords, firstHeader, parseHeaderBlock } from '../threads/headers.js';
import { normaliseId } from '../threads/message-ids.js';
import { newQueueId } from '../store/relay.js';
import { prepareSubmission, SubmissionError } from './message-stamp.js';
import type { OutboundQueue } from './outbound-queue.js';
import type { RelayTargets } from './relay-targets.js';
import { baseOptions, readMessage, smtpError, SmtpListener, type ListenerTls } from './smtp-listener.js';

/**
 * The submission listener: the ATS sends as a consented user. AUTH is required; the sender
 * must be a user who can send (their own smtp settings, or the smarthost) or the ATS names
 * the user in `X-Mailsync-User`; limits come from config. An accepted message has its thread
 * recorded and its queue entry written before the ATS hears `250`.
 */

export interface SubmissionOptions {
  users: ReadonlyArray<{ user: string; pass: string }>;
  maxMessageBytes: number;
  maxRecipients: number;
  tls: ListenerTls | null;
  atsDomains: readonly string[];
  isAtsId: (normId: string) => boolean;
  newMessageId: () => string;
}

export interface SubmissionDeps {
  queue: OutboundQueue;
  targets: RelayTargets;
  log: Logger;
  observe?: (outcome: 'accepted' | 'refused') => void;
}

const digest = (s: string) => crypto.createHash('sha256').update(s, 'utf8').digest();

/** Compares against every configured login, in constant time per comparison and without stopping early. */
export function checkLogin(users: SubmissionOptions['users'], user: string, pass: string): boolean {
  const u = digest(user);
  const p = digest(pass);
  let ok = false;
  for (const c of users) {
    const match = crypto.timingSafeEqual(u, digest(c.user)) && crypto.timingSafeEqual(p, digest(c.pass));
    ok = ok || match;
  }
  return ok;
}

function inDomains(address: string, domains: readonly string[]): boolean {
  const d = address.slice(address.lastIndexOf('@') + 1).toLowerCase();
  return address.includes('@') && domains.some((ats) => d === ats || d.endsWith(`.${ats}`));
}

export class SubmissionServer {
  readonly #listener: SmtpListener;
  readonly #opts: SubmissionOptions;
  readonly #deps: SubmissionDeps;
  /** Per session: the senders found for its current MAIL FROM, so DATA need not look again. */
  readonly #senders = new Map<string, { address: string; users: string[] }>();

  constructor(opts: SubmissionOptions, deps: SubmissionDeps) {
    this.#opts = opts;
    this.#deps = deps;
    this.#listener = new SmtpListener('submission', {
      ...baseOptions(opts.tls, 'mailsync relay'),
      authMethods: ['PLAIN', 'LOGIN'],
      // Without a certificate there is nothing to protect the login with: the listener is
      // then meant for loopback or a private network (config check warns otherwise).
      allowInsecureAuth: !opts.tls,
      authRequiredMessage: '5.7.0 Authentication required: log in with one of smtp.submission.users',
      size: opts.maxMessageBytes,
      rejectOversized: true,
      maxRecipients: opts.maxRecipients,
      onAuth: (auth, session, cb) => this.#onAuth(auth, session, cb),
      onMailFrom: (address, session, cb) => {
        this.#onMailFrom(address, session).then(() => cb(), (err: Error) => this.#refuse(session, err, cb));
      },
      onClose: (session) => {
        this.#senders.delete(session.id);
      },
      onData: (stream, session, cb) => {
        this.#onData(stream, session).then((text) => cb(null, text), (err: Error) => this.#refuse(session, err, cb));
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

  #onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, cb: (err: Error | null | undefined, res?: { user?: unknown }) => void): void {
    if (checkLogin(this.#opts.users, auth.username ?? '', auth.password ?? '')) return cb(null, { user: auth.username });
    this.#deps.log.info({ session: session.id, remote: session.remoteAddress }, 'submission login refused');
    cb(smtpError(535, '5.7.8 Authentication credentials invalid'));
  }

  async #onMailFrom(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const sender = address.address;
    const users = await this.#deps.targets.sendersFor(sender);
    this.#senders.set(session.id, { address: sender, users });
    if (users.length) return;
    // the ATS's own address (a bounce address in its domain): the user comes in X-Mailsync-User
    if (inDomains(sender, this.#opts.atsDomains)) return;
    throw smtpError(553, `5.7.1 <${sender}>: sender address rejected: not the address of a user who can send through mailsync (registered, with smtp settings in their consent or a smarthost configured); send from the user's address, or from an address in ${this.#opts.atsDomains[0] ?? 'the ATS domain'} and name the user in X-Mailsync-User`);
  }

  async #onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const raw = await readMessage(stream, this.#opts.maxMessageBytes);
    if (!raw) throw smtpError(552, `5.3.4 Message exceeds the size limit of ${this.#opts.maxMessageBytes} bytes`);
    const prepared = prepareSubmission(raw, { isAtsId: this.#opts.isAtsId, newMessageId: this.#opts.newMessageId });
    const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const targets = this.#deps.targets;
    const known = this.#senders.get(session.id);
    const senders = known?.address === mailFrom ? known.users : await targets.sendersFor(mailFrom);
    const userId = prepared.userId ?? senders[0];
    if (!userId) throw new SubmissionError(550, `5.7.1 <${mailFrom}> is not a user's address: name the user in X-Mailsync-User`);
    // a sender found at MAIL FROM was just checked; a user named in the header is checked now
    const refusal = senders.includes(userId) ? null : await targets.refusal(userId);
    if (refusal) throw new SubmissionError(550, `5.7.1 X-Mailsync-User: ${refusal}`);
    const headers = parseHeaderBlock(prepared.raw);
    const entry = await this.#deps.queue.accept({
      entry: {
        queueId: newQueueId(), userId, messageId: prepared.messageId, from: await targets.envelopeFrom(userId, mailFrom),
        to: session.envelope.rcptTo.map((r) => r.address), accepted: [], rejected: [], attempts: 0, nextAttemptAt: null,
        lastError: null, sendingSince: null, size: prepared.raw.length, createdAt: new Date().toISOString(),
      },
      raw: prepared.raw,
      thread: {
        matchKeys: [...new Set([prepared.messageId, ...prepared.replacedIds].map(normaliseId))],
        candidateIds: prepared.candidateIds,
        subject: decodeEncodedWords(firstHeader(headers, 'subject') ?? '').replace(/\s+/g, ' ').trim(),
      },
    });
    this.#deps.observe?.('accepted');
    this.#deps.log.info({ session: session.id, queueId: entry.queueId, userId, threadId: entry.threadId, recipients: entry.to.length, size: entry.size }, 'submission accepted');
    return `2.0.0 Ok: queued as ${entry.queueId} ${prepared.messageId}`;
  }

  #refuse(session: SMTPServerSession, err: Error, cb: (err: Error) => void): void {
    const code = (err as { responseCode?: number }).responseCode;
    if (code === undefined) {
      // our own fault (the store): the ATS should try again, nothing was accepted
      this.#deps.log.error({ err, session: session.id }, 'submission failed inside mailsync');
      cb(smtpError(451, '4.3.0 Temporary failure inside mailsync, try again later'));
    } else {
      this.#deps.log.info({ session: session.id, code, reason: err.message }, 'submission refused');
      cb(err);
    }
    this.#deps.observe?.('refused');
  }
}
