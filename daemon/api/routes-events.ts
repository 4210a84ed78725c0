import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import type { EventRecord, EventStatus } from '../store/records.js';
import { assertSystemChannel } from './acl.js';
import { eventsQuery } from './schemas.js';
import type { ApiContext } from './server.js';

/** An event as the feed shows it: the webhook body plus its delivery state. */
export function toFeedEvent(e: EventRecord): Record<string, unknown> {
  return {
    id: e.id, type: e.type, createdAt: e.createdAt, data: e.data, cursor: String(e.seq),
    delivery: { status: e.status, attempts: e.attempts, lastError: e.lastError, nextAttemptAt: e.nextAttemptAt, deliveredAt: e.deliveredAt },
  };
}

export function registerEventRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Querystring: { after?: string; limit: number; status?: EventStatus } }>('/v1/events', {
    schema: { summary: 'The change feed: every event after a cursor, in commit order', querystring: eventsQuery },
  }, async (req) => {
    // every event of every thread, secret ones marked `secret: true`: the ATS's channel
    assertSystemChannel(req.actor, 'The change feed');
    const after = req.query.after ? Number(req.query.after) : 0;
    const status = req.query.status;
    const events = await ctx.outbox.list(after, req.query.limit, status ? (e) => e.status === status : undefined);
    const last = events[events.length - 1];
    // the cursor always moves forward (or stays), so a poller can keep asking with it
    return { events: events.map(toFeedEvent), nextCursor: last ? String(last.seq) : String(after) };
  });

  app.post<{ Params: { eventId: string } }>('/v1/events/:eventId/redeliver', {
    schema: {
      summary: 'Deliver an event again (a failed one, or one the receiver lost)',
      params: { type: 'object', required: ['eventId'], properties: { eventId: { type: 'string', pattern: '^evt_[0-9a-z]{1,40}$' } } },
    },
  }, async (req, reply) => {
    assertSystemChannel(req.actor, 'Redelivering events');
    const seq = ctx.outbox.seqOf(req.params.eventId);
    const event = seq === null ? undefined : await ctx.outbox.get(seq);
    if (!event) throw new ApiError('not_found', `No event ${req.params.eventId}.`);
    if (!ctx.dispatcher) throw new ApiError('conflict', 'No webhook URL is configured (webhooks.url): events are only in the change feed.');
    await ctx.dispatcher.redeliver(event);
    return reply.status(202).send({ id: event.id, status: 'pending' });
  });
}
