import fs from 'node:fs';
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import type { Accounts } from '../store/accounts.js';
import type { Store } from '../store/store.js';
import type { Outbox } from '../store/outbox.js';
import type { Threads } from '../store/threads.js';
import { RelayRecords } from '../store/relay.js';
import type { Ingestor } from '../sync/ingestor.js';
import type { MailboxLogins } from '../sync/oauth2-tokens.js';
import type { Metrics } from '../ops/metrics.js';
import type { MessageIdStamper } from './message-stamp.js';
import { OutboundQueue } from './outbound-queue.js';
import { RelayTargets } from './relay-targets.js';
import { SentCopier } from './sent-copy.js';
import { loadListenerTls } from './smtp-listener.js';
import { SubmissionServer } from './submission-server.js';
import { IntakeServer } from './intake-server.js';

/**
 * The mail-relay half of the daemon, built from config: the outbound queue, the submission
 * listener that feeds it and the limited-sync intake. `start` brings up the queue before the
 * listeners; `stop` closes the listeners first (no new mail), then drains the queue.
 */

export interface RelayDeps {
  config: Config;
  store: Store;
  outbox: Outbox;
  accounts: Accounts;
  threads: Threads;
  ingestor: Ingestor;
  logins: MailboxLogins;
  stamper: MessageIdStamper;
  isAtsKey: (normId: string) => boolean;
  normalise: (a: string) => string;
  metrics: Metrics;
  log: Logger;
  /** Ports to listen on, null for a disabled listener (config: port 0). 0 here picks a free port. */
  listen: { submission: number | null; intake: number | null };
}

export class Relay {
  readonly queue: OutboundQueue;
  readonly records: RelayRecords;
  readonly #submission: SubmissionServer | null;
  readonly #intake: IntakeServer | null;
  readonly #deps: RelayDeps;
  #ports = { submission: 0, intake: 0 };

  constructor(deps: RelayDeps) {
    this.#deps = deps;
    const { config, metrics, log } = deps;
    const smtp = config.smtp;
    const r = smtp.relay;
    const tlsCa = r.tlsCaFile ? fs.readFileSync(r.tlsCaFile) : null;
    const listenerTls = loadListenerTls(smtp.tls.certFile, smtp.tls.keyFile);
    this.records = new RelayRecords(deps.store, deps.outbox, deps.threads);
    const targets = new RelayTargets(deps.accounts, deps.logins, r.smarthost, deps.normalise);
    const copier = r.appendToSent
      ? new SentCopier(deps.accounts, deps.logins, { allowPlaintext: config.sync.allowPlaintext, tlsCa: config.sync.tlsCaFile ? fs.readFileSync(config.sync.tlsCaFile) : null, connectTimeoutMs: config.sync.connectTimeoutSeconds * 1000 }, log.child({ component: 'relay' }))
      : null;
    this.queue = new OutboundQueue(this.records, targets, log.child({ component: 'relay' }), {
      concurrency: Math.max(1, r.concurrency),
      retryDelaysSeconds: r.retryDelaysSeconds,
      durableAccept: r.durableAccept,
      transport: { allowPlaintext: r.allowPlaintext, tlsCa, connectTimeoutMs: r.connectTimeoutSeconds * 1000, socketTimeoutMs: r.socketTimeoutSeconds * 1000, maxConnections: r.connectionsPerServer },
    }, {
      store: async (entry, raw, finish) => {
        // A mailbox mailsync reads shows the sent message in its Sent folder (or gets the copy of
        // appendToSent), and the sync stores it from there. For a user without IMAP consent
        // (limited sync) the relay is the only witness: it stores the message itself.
        if (await deps.accounts.getMailbox(entry.userId)) return false;
        const rec = deps.ingestor.headerRecord(0, raw, raw.length, null, `relay:${entry.queueId}`);
        await deps.ingestor.ingest(rec, raw, true, { userId: entry.userId, folder: 'relay', location: null, origin: 'ats', alsoWrite: finish });
        return true;
      },
      afterSent: copier ? async (entry, raw) => void (await copier.copy(entry.userId, raw)) : undefined,
      secretOf: async (threadId) => (await deps.threads.getThread(threadId))?.secret ?? false,
      observe: { outcome: (o) => metrics.relayMessages.inc({ outcome: o }) },
    });
    this.#submission = deps.listen.submission === null ? null : new SubmissionServer({
      users: smtp.submission.users,
      maxMessageBytes: smtp.submission.maxMessageBytes,
      maxRecipients: smtp.submission.maxRecipients,
      tls: listenerTls,
      atsDomains: config.ats.messageIdDomains,
      isAtsId: deps.isAtsKey,
      newMessageId: () => deps.stamper.create(config.ats.messageIdDomains[0] ?? 'mailsync.invalid'),
    }, { queue: this.queue, targets, log: log.child({ component: 'submission' }), observe: (o) => metrics.relaySubmissions.inc({ outcome: o }) });
    this.#intake = deps.listen.intake === null ? null : new IntakeServer({
      maxMessageBytes: smtp.intake.maxMessageBytes,
      maxRecipients: smtp.intake.maxRecipients,
      tls: listenerTls,
    }, { ingestor: deps.ingestor, threads: deps.threads, accounts: deps.accounts, normalise: deps.normalise, log: log.child({ component: 'intake' }), observe: (o) => metrics.intakeMessages.inc({ outcome: o }) });
  }

  /** Ports the listeners got (0 when disabled). */
  get ports(): { submission: number; intake: number } {
    return { ...this.#ports };
  }

  async start(): Promise<void> {
    await this.queue.start();
    const smtp = this.#deps.config.smtp;
    const { listen } = this.#deps;
    if (this.#submission) this.#ports.submission = await this.#submission.start(smtp.submission.host, listen.submission ?? 0);
    if (this.#intake) this.#ports.intake = await this.#intake.start(smtp.intake.host, listen.intake ?? 0);
  }

  /** Listeners first (nothing new comes in), then the queue drains what is in flight. */
  async stop(): Promise<void> {
    for (const [name, step] of [['intake', () => this.#intake?.stop()], ['submission', () => this.#submission?.stop()], ['queue', () => this.queue.stop()]] as const) {
      try {
        await step();
      } catch (err) {
        this.#deps.log.error({ err, step: name }, 'stopping a part of the relay failed');
      }
    }
  }
}
