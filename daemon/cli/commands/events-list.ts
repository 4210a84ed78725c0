import { toFeedEvent } from '../../api/routes-events.js';
import { commandConfig, intOption, stringOption, table, UsageError, type Command } from '../command.js';
import { ACCESS_HELP, describeAccess, openStoreAccess } from '../store-access.js';

export interface FeedEvent {
  id: string;
  type: string;
  createdAt: string;
  cursor: string;
  data: Record<string, unknown>;
  delivery: { status: string; attempts: number; lastError: string | null; nextAttemptAt: string | null; deliveredAt: string | null };
}

const command: Command = {
  name: 'events list',
  usage: '[--failed | --status S] [--after CURSOR] [--limit N] [--json]',
  summary: 'list events of the outbox and change feed, e.g. the webhooks that failed for good',
  help: `Events in commit order after --after (a cursor: the CURSOR column), at most --limit (default 100). --failed shows only events whose delivery failed after the last retry; they can be sent again with \`mailsync events redeliver\`. --json prints one feed event per line, as GET /v1/events shows them. ${ACCESS_HELP}`,
  options: { failed: { type: 'boolean' }, status: { type: 'string' }, after: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
  async run(args) {
    const { values, io } = args;
    const limit = intOption(values, 'limit', 100, 1, 1000);
    const status = values.failed ? 'failed' : stringOption(values, 'status');
    if (status && !['pending', 'delivered', 'failed', 'not_pushed'].includes(status)) throw new UsageError('--status must be one of pending, delivered, failed, not_pushed');
    const after = stringOption(values, 'after') ?? '0';
    if (!/^\d{1,16}$/.test(after)) throw new UsageError('--after must be a cursor (a number from the CURSOR column)');
    const config = commandConfig(args);
    const access = await openStoreAccess(config);
    let events: FeedEvent[];
    try {
      if (access.via === 'daemon') {
        const q = new URLSearchParams({ after, limit: String(limit), ...(status ? { status } : {}) });
        events = (await access.daemon.json<{ events: FeedEvent[] }>('GET', `/v1/events?${q}`)).events;
      } else {
        const list = await access.outbox.list(Number(after), limit, status ? (e) => e.status === status : undefined);
        events = list.map((e) => toFeedEvent(e) as unknown as FeedEvent);
      }
    } finally {
      await access.close();
    }
    if (values.json) {
      for (const e of events) io.stdout.write(`${JSON.stringify(e)}\n`);
      return 0;
    }
    if (!events.length) io.stdout.write(status ? `No ${status} events.\n` : 'No events.\n');
    else {
      io.stdout.write(table(['CURSOR', 'ID', 'TYPE', 'CREATED', 'DELIVERY', 'ATTEMPTS', 'LAST ERROR'], events.map((e) => [
        e.cursor, e.id, e.type, e.createdAt, e.delivery.status, String(e.delivery.attempts), e.delivery.lastError ?? '-',
      ])));
    }
    io.stderr.write(`${describeAccess(access, config)}\n`);
    return 0;
  },
};
export default command;
