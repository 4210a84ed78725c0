import fs from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config/load.js';
import { Keyring } from './store/keyring.js';
import { KeyRotation } from './store/key-rotation.js';
import { Store } from './store/store.js';
import { Outbox } from './store/outbox.js';
import { Accounts } from './store/accounts.js';
import { Threads } from './store/threads.js';
import { Quarantine } from './store/quarantine.js';
import { Audit } from './store/audit.js';
import { CandidateErasure } from './store/erasure.js';
import { normaliseAddress } from './threads/addresses.js';
import { isAtsDomainId } from './threads/matching.js';
import { Ingestor } from './sync/ingestor.js';
import { SyncSupervisor } from './sync/supervisor.js';
import { MailboxLogins } from './sync/oauth2-tokens.js';
import { ImportRunner } from './sync/import-job.js';
import { ConnectionGate } from './sync/imap-connect.js';
import { WebhookDispatcher } from './events/dispatcher.js';
import { buildApi, tokenId } from './api/server.js';
import { Metrics } from './ops/metrics.js';
import { MessageIdStamper } from './mail/message-stamp.js';
import { Relay } from './mail/relay.js';
import { mailboxStateCounts } from './ops/status.js';
import { MailsyncError } from './errors.js';

/**
 * The one wiring place: builds the subsystems in order and stops them in reverse. Nothing
 * here reads argv, env or signals; `cli/` does.
 */
export interface Daemon {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** `http://host:port` of the REST API once started. */
  readonly apiUrl: string;
  readonly parts: DaemonParts;
}

export interface DaemonParts {
  store: Store;
  outbox: Outbox;
  accounts: Accounts;
  threads: Threads;
  supervisor: SyncSupervisor;
  dispatcher: WebhookDispatcher | null;
  api: FastifyInstance;
  metrics: Metrics;
  relay: Relay;
  /** Fresh logins (OAuth2 access tokens refreshed) for IMAP and the relay's SMTP. */
  logins: MailboxLogins;
  imports: ImportRunner;
  audit: Audit;
  erasure: CandidateErasure;
  keys: KeyRotation;
}

export interface DaemonOptions {
  metrics?: Metrics;
  /**
   * SMTP listener ports instead of the configured ones, 0 for any free port (embedding, tests).
   * In config a port of 0 disables a listener, as API.md says.
   */
  smtpPorts?: { submission?: number; intake?: number };
}

export function createDaemon(config: Config, log: Logger, opts: DaemonOptions = {}): Daemon {
  let parts: DaemonParts | null = null;
  let apiUrl = '';
  let ready = false;
  let stopping: Promise<void> | null = null;
  const metrics = opts.metrics ?? new Metrics();

  async function start(): Promise<void> {
    const { keyring, warnings: keyWarnings } = Keyring.load({ key: config.store.key || undefined, keyFile: config.store.keyFile }, { storePath: config.store.path });
    for (const w of keyWarnings) log.warn(w);
    const store = await Store.open({ path: config.store.path, keyring, encryptContent: config.store.encryptContent });
    const keys = new KeyRotation(store, log.child({ component: 'keys' }));
    if (keyring.ids.length > 1) log.warn({ keyIds: keyring.ids, current: keyring.current }, `${keyring.source} holds older keys besides the current one: a key rotation did not finish; run \`mailsync keys rotate\` again`);
    const outbox = new Outbox(store, { push: !!config.webhooks.url });
    await outbox.init();
    const audit = new Audit(store);
    await audit.init();
    const domainRules = Object.fromEntries(config.addresses.domainRules.map(({ domain, ...rule }) => [domain, { ...rule, tagSeparator: rule.tagSeparator ?? null }]));
    const normalise = (a: string) => normaliseAddress(a, domainRules);
    const accounts = new Accounts(store, outbox, normalise);
    const domains = config.ats.messageIdDomains;
    // ids the relay stamped stay tracked even if the ATS domains change later
    const stamper = new MessageIdStamper(keyring.stampKey);
    const isAtsKey = (k: string) => isAtsDomainId(k, domains) || stamper.verify(k);
    const threads = new Threads(store, outbox, accounts, { isAtsKey, normalise, maxRawBytes: config.store.maxRawBytes });
    let supervisor: SyncSupervisor | null = null;
    const quarantine = new Quarantine(store);
    const ingestor = new Ingestor(threads, log.child({ component: 'ingest' }), {
      parseTimeoutMs: config.sync.parseTimeoutMs, maxTextBytes: config.store.maxTextBytes, quarantine,
      onStored: (_keys, _ctx, reconsider) => supervisor?.onStored(reconsider),
      onQuarantined: (reason) => metrics.messagesQuarantined.inc({ reason }),
    });
    const s = config.sync;
    const o = config.oauth2;
    const logins = new MailboxLogins({
      store, accounts, log: log.child({ component: 'oauth2' }),
      observe: (provider, outcome) => metrics.oauthRefreshes.inc({ provider, outcome }),
      settings: { refreshMarginMs: o.refreshMarginSeconds * 1000, timeoutMs: o.timeoutMs, providers: { google: o.google, microsoft: o.microsoft, custom: o.custom } },
    });
    supervisor = new SyncSupervisor({
      store, accounts, threads, ingestor, logins, gate: new ConnectionGate(s.maxConnectionsPerUser), startGate: new ConnectionGate(s.startConcurrency),
      settings: {
        allowPlaintext: s.allowPlaintext,
        tlsCa: s.tlsCaFile ? fs.readFileSync(s.tlsCaFile) : null,
        sentPollMs: s.sentPollSeconds * 1000,
        idleRefreshMs: s.idleRefreshSeconds * 1000,
        connectTimeoutMs: s.connectTimeoutSeconds * 1000,
        socketTimeoutMs: s.socketTimeoutSeconds * 1000,
        probeTimeoutMs: s.probeTimeoutSeconds * 1000,
        fetchBatchSize: s.fetchBatchSize,
        backoff: { minMs: s.backoff.minMs, maxMs: s.backoff.maxMs, resetAfterMs: s.backoff.resetAfterSeconds * 1000 },
        initialWindowDays: s.initialWindowDays,
        maxRawBytes: config.store.maxRawBytes,
        maxMessageBytes: s.maxMessageBytes,
        pendingTtlMs: 7 * 86_400_000,
      },
      observe: {
        fetched: (n) => metrics.messagesFetched.inc(n),
        stored: (n) => metrics.messagesStored.inc(n),
        connected: (up) => (up ? metrics.connections.inc() : metrics.connections.dec()),
        lag: (seconds) => metrics.syncLag.observe(seconds),
      },
    }, log);
    const w = config.webhooks;
    const dispatcher = w.url
      ? new WebhookDispatcher(outbox, log.child({ component: 'webhooks' }), { url: w.url, secret: w.secret, timeoutMs: w.timeoutMs, concurrency: Math.max(1, w.concurrency), retry: w.retry }, (outcome, seconds) => {
        metrics.webhookDeliveries.inc({ outcome });
        metrics.webhookLatency.observe(seconds);
      })
      : null;
    const port = (configured: number, override: number | undefined) => (override !== undefined ? override : configured === 0 ? null : configured);
    const relay = new Relay({
      config, store, outbox, accounts, threads, ingestor, logins, stamper, isAtsKey, normalise, metrics, log,
      listen: { submission: port(config.smtp.submission.port, opts.smtpPorts?.submission), intake: port(config.smtp.intake.port, opts.smtpPorts?.intake) },
    });
    const sync = supervisor;
    const imports = new ImportRunner({
      store, outbox, accounts, threads, ingestor, normalise, log: log.child({ component: 'import' }),
      withConnection: (userId, task) => sync.withConnection(userId, task), batchSize: s.fetchBatchSize, maxRawBytes: config.store.maxRawBytes,
    });
    const erasure = new CandidateErasure({
      store, outbox, accounts, audit, normalise,
      holdImports: (cid) => imports.holdCandidate(cid),
      holdRelay: (threadIds) => relay.queue.withhold(threadIds),
    });
    const api = await buildApi({ config, store, accounts, threads, outbox, supervisor, dispatcher, metrics, normalise, isReady: () => ready, log, logins, imports, quarantine, audit, erasure, relayQueueDepth: () => relay.queue.depth, relay: relay.queue, keys });
    parts = { store, outbox, accounts, threads, supervisor, dispatcher, api, metrics, relay, logins, imports, audit, erasure, keys };
    const sup = supervisor;
    metrics.readFrom({
      mailboxStates: () => mailboxStateCounts(accounts),
      outboxDepth: async () => (await outbox.queued(1_000_000)).length,
      relayQueueDepth: () => relay.queue.depth,
      oldestFolderCheckSeconds: () => {
        const oldest = sup.oldestFolderCheck();
        return oldest === null ? null : Math.max(0, (Date.now() - oldest) / 1000);
      },
    });
    await dispatcher?.start();
    await relay.start();
    try {
      await api.listen({ host: config.api.host, port: config.api.port });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      throw new MailsyncError('MAILSYNC_ERR_CONFIG', `api.port: ${config.api.host}:${config.api.port} is already in use by another program; set api.port (or MAILSYNC_API_PORT) to a free port, or 0 for any free port`, { cause: err });
    }
    const addr = api.server.address();
    apiUrl = typeof addr === 'object' && addr ? `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}` : '';
    await supervisor.start();
    await imports.start();
    // an erasure interrupted before LevelDB's files were rewritten: finish it, in the background
    void erasure.start().then(
      (resumed) => resumed && log.info('the store files were rewritten after an interrupted erasure'),
      (err: unknown) => log.error({ err }, 'rewriting the store files after an interrupted erasure failed; it is tried again on the next start'),
    );
    ready = true;
    log.info({ api: apiUrl, store: config.store.path, apiTokens: config.api.tokens.map((t) => tokenId(store, t)), webhooks: w.url ? 'push' : 'feed only', mailboxes: supervisor.size, smtp: relay.ports, relayQueued: relay.queue.depth }, 'mailsync started');
  }

  /** Stops in reverse order; each step on its own so one failure does not skip the rest. */
  function stop(): Promise<void> {
    stopping ??= (async () => {
      ready = false;
      if (!parts) return;
      const steps: Array<[string, () => Promise<unknown>]> = [
        ['api', () => parts!.api.close()],
        ['relay', () => parts!.relay.stop()],
        // sync first: it cancels the IMAP work of running imports, which then stay queued
        ['sync', () => parts!.supervisor.stop()],
        ['imports', () => parts!.imports.stop()],
        ['webhooks', async () => parts!.dispatcher?.stop()],
        ['erasure', async () => parts!.erasure.stop()],
        // a rotation stops between two batches; what it re-sealed stays, every key stays in the file
        ['keys', () => parts!.keys.stop()],
        ['store', () => parts!.store.close()],
      ];
      for (const [name, step] of steps) {
        try {
          await step();
        } catch (err) {
          log.error({ err, step: name }, 'stopping a part failed');
        }
      }
      log.info('mailsync stopped');
    })();
    return stopping;
  }

  return {
    start,
    stop,
    get apiUrl() {
      return apiUrl;
    },
    get parts() {
      if (!parts) throw new Error('the daemon has not started');
      return parts;
    },
  };
}
