import client from 'prom-client';

/** Prometheus metrics, one registry per daemon (tests run several in one process). */
export class Metrics {
  readonly registry = new client.Registry();
  readonly connections: client.Gauge;
  readonly messagesFetched: client.Counter;
  readonly messagesStored: client.Counter;
  readonly webhookDeliveries: client.Counter;
  readonly webhookLatency: client.Histogram;
  readonly apiAuthFailures: client.Counter;
  readonly relayQueueDepth: client.Gauge;
  readonly relayMessages: client.Counter;
  readonly relaySubmissions: client.Counter;
  readonly intakeMessages: client.Counter;

  constructor(collectDefaults = true) {
    const registers = [this.registry];
    this.connections = new client.Gauge({ name: 'mailsync_imap_connections', help: 'Open IMAP connections', registers });
    this.messagesFetched = new client.Counter({ name: 'mailsync_messages_examined_total', help: 'Messages whose header fields were fetched', registers });
    this.messagesStored = new client.Counter({ name: 'mailsync_messages_stored_total', help: 'Messages stored in tracked threads', registers });
    this.webhookDeliveries = new client.Counter({ name: 'mailsync_webhook_deliveries_total', help: 'Webhook delivery attempts by outcome', labelNames: ['outcome'], registers });
    this.webhookLatency = new client.Histogram({ name: 'mailsync_webhook_delivery_seconds', help: 'Time of one webhook delivery attempt', buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10], registers });
    this.apiAuthFailures = new client.Counter({ name: 'mailsync_api_auth_failures_total', help: 'Requests refused for a missing or wrong token', registers });
    this.relayQueueDepth = new client.Gauge({ name: 'mailsync_relay_queue_depth', help: 'Messages accepted by the relay and not yet sent or given up', registers });
    this.relayMessages = new client.Counter({ name: 'mailsync_relay_messages_total', help: 'Relay send attempts by outcome: sent, failed (for good), deferred (retried later)', labelNames: ['outcome'], registers });
    this.relaySubmissions = new client.Counter({ name: 'mailsync_relay_submissions_total', help: 'Messages offered on the submission listener: accepted or refused', labelNames: ['outcome'], registers });
    this.intakeMessages = new client.Counter({ name: 'mailsync_intake_messages_total', help: 'Messages received on the limited-sync intake: stored, duplicate, dropped (no tracked thread, not stored), unattributed, refused', labelNames: ['outcome'], registers });
    if (collectDefaults) client.collectDefaultMetrics({ register: this.registry, prefix: 'mailsync_' });
  }
}
