import client from 'prom-client';
import type { MailboxState } from '../store/records.js';

/**
 * Prometheus metrics, one registry per daemon (tests run several in one process). Counters and
 * histograms are fed by the subsystems through the daemon's wiring; gauges that describe
 * stored state (mailboxes by state, queue depths, how long ago folders were checked) are read
 * when /metrics is scraped, from the sources given to `readFrom`.
 */

/** What the scrape-time gauges read. Each source is optional: a subsystem that is off reports nothing. */
export interface MetricSources {
  /** Number of consenting mailboxes in each state. */
  mailboxStates?: () => Promise<Partial<Record<MailboxState, number>>>;
  /** Events written but not yet delivered to the webhook. */
  outboxDepth?: () => Promise<number>;
  /** Messages accepted by the relay and not yet handed to the provider. */
  relayQueueDepth?: () => Promise<number> | number;
  /** Seconds since the least recently checked folder of a running mailbox was confirmed up to date. */
  oldestFolderCheckSeconds?: () => number | null;
}

/** Every state a mailbox can be in, so a state with no mailboxes reports 0 rather than vanishing. */
const MAILBOX_STATES: MailboxState[] = ['connecting', 'initial_sync', 'live', 'auth_failed', 'imap_disabled', 'unreachable', 'throttled', 'revoked'];

export class Metrics {
  readonly registry = new client.Registry();
  #sources: MetricSources = {};

  // ---- sync ----
  readonly connectionsByState: client.Gauge<'state'>;
  readonly connections: client.Gauge;
  readonly messagesFetched: client.Counter;
  readonly messagesStored: client.Counter;
  readonly messagesQuarantined: client.Counter<'reason'>;
  readonly syncLag: client.Histogram;
  readonly folderCheckAge: client.Gauge;
  readonly oauthRefreshes: client.Counter<'provider' | 'outcome'>;
  // ---- events ----
  readonly webhookDeliveries: client.Counter<'outcome'>;
  readonly webhookLatency: client.Histogram;
  readonly outboxDepth: client.Gauge;
  // ---- relay ----
  readonly relayQueueDepth: client.Gauge;
  // ---- api ----
  readonly apiAuthFailures: client.Counter;
  readonly apiAuthBlocks: client.Counter;
  readonly relayMessages: client.Counter;
  readonly relaySubmissions: client.Counter;
  readonly intakeMessages: client.Counter;

  constructor(collectDefaults = true) {
    const registers = [this.registry];
    const sources = () => this.#sources;
    this.connectionsByState = new client.Gauge({
      name: 'mailsync_connections', help: 'Consenting mailboxes by connection state (connecting, initial_sync, live, auth_failed, imap_disabled, unreachable, throttled)', labelNames: ['state'], registers,
      async collect() {
        const read = sources().mailboxStates;
        if (!read) return;
        const counts = await read();
        for (const state of MAILBOX_STATES) if (state !== 'revoked') this.set({ state }, counts[state] ?? 0);
      },
    });
    this.connections = new client.Gauge({ name: 'mailsync_imap_connections', help: 'Open IMAP connections', registers });
    this.messagesFetched = new client.Counter({ name: 'mailsync_messages_examined_total', help: 'Messages whose header fields were fetched', registers });
    this.messagesStored = new client.Counter({ name: 'mailsync_messages_stored_total', help: 'Messages stored in tracked threads', registers });
    this.messagesQuarantined = new client.Counter({ name: 'mailsync_messages_quarantined_total', help: 'Messages set aside because they could not be processed, by reason', labelNames: ['reason'], registers });
    this.syncLag = new client.Histogram({
      name: 'mailsync_sync_lag_seconds', help: 'Time from a message arriving in a live mailbox (IMAP INTERNALDATE) to it being stored',
      // the promise is about a second; the tail shows reconnects and provider delays
      buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900], registers,
    });
    this.folderCheckAge = new client.Gauge({
      name: 'mailsync_folder_check_age_seconds', help: 'Seconds since the least recently checked folder of a running mailbox was confirmed up to date (a stalled worker shows here)', registers,
      collect() {
        const v = sources().oldestFolderCheckSeconds?.();
        if (v !== undefined && v !== null) this.set(v);
      },
    });
    this.oauthRefreshes = new client.Counter({ name: 'mailsync_oauth_refreshes_total', help: 'OAuth2 access token refreshes by provider and outcome (ok, failed, revoked)', labelNames: ['provider', 'outcome'], registers });
    this.webhookDeliveries = new client.Counter({ name: 'mailsync_webhook_deliveries_total', help: 'Webhook delivery attempts by outcome (delivered, retry, failed)', labelNames: ['outcome'], registers });
    this.webhookLatency = new client.Histogram({ name: 'mailsync_webhook_delivery_seconds', help: 'Time of one webhook delivery attempt', buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10], registers });
    this.outboxDepth = new client.Gauge({
      name: 'mailsync_outbox_depth', help: 'Events stored but not yet delivered to the webhook', registers,
      async collect() {
        const read = sources().outboxDepth;
        if (read) this.set(await read());
      },
    });
    this.relayQueueDepth = new client.Gauge({
      name: 'mailsync_relay_queue_depth', help: 'Messages accepted by the SMTP relay and not yet handed to the provider', registers,
      async collect() {
        const read = sources().relayQueueDepth;
        if (read) this.set(await read());
      },
    });
    this.apiAuthFailures = new client.Counter({ name: 'mailsync_api_auth_failures_total', help: 'Requests refused for a missing or wrong token', registers });
    this.apiAuthBlocks = new client.Counter({ name: 'mailsync_api_auth_blocks_total', help: 'Remote addresses refused for a while (429) after too many failed authentications', registers });
    this.relayMessages = new client.Counter({ name: 'mailsync_relay_messages_total', help: 'Relay send attempts by outcome: sent, failed (for good), deferred (retried later)', labelNames: ['outcome'], registers });
    this.relaySubmissions = new client.Counter({ name: 'mailsync_relay_submissions_total', help: 'Messages offered on the submission listener: accepted or refused', labelNames: ['outcome'], registers });
    this.intakeMessages = new client.Counter({ name: 'mailsync_intake_messages_total', help: 'Messages received on the limited-sync intake: stored, duplicate, dropped (no tracked thread, not stored), unattributed, refused', labelNames: ['outcome'], registers });
    // process metrics and nodejs_eventloop_lag_* (event loop lag), under the mailsync_ prefix
    if (collectDefaults) client.collectDefaultMetrics({ register: this.registry, prefix: 'mailsync_' });
  }

  /** Where the scrape-time gauges read from; called by the daemon's wiring once its parts exist. */
  readFrom(sources: MetricSources): void {
    this.#sources = { ...this.#sources, ...sources };
  }
}
