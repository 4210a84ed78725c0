import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { QUARANTINE_REASONS, type QuarantineRecord } from '../store/quarantine.js';
import { canReadMailbox, canSeeThread, isAdmin } from './acl.js';
import { ID_PATTERN } from './schemas.js';
import type { ApiContext } from './server.js';

/**
 * GET /v1/quarantine: mail that was not taken in as it should be, with the reason — for the
 * mailbox owner, admins, or the ATS itself. An entry of a secret thread is listed only to
 * those who may see the thread.
 */

function toView(r: QuarantineRecord): Record<string, unknown> {
  return {
    id: r.id, userId: r.userId, folder: r.folder, uidValidity: r.uidValidity, uid: r.uid, messageKey: r.threadId ? r.messageKey : null,
    messageId: r.messageId, threadId: r.threadId, stored: r.threadId !== null, reason: r.reason, explanation: QUARANTINE_REASONS[r.reason],
    detail: r.detail, size: r.size, at: r.at,
  };
}

export function registerQuarantineRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Querystring: { userId?: string; cursor?: string; limit: number } }>('/v1/quarantine', {
    schema: {
      summary: 'Messages set aside: stored only in part (unreadable MIME, a parser timeout, too large) or not at all, with the reason',
      querystring: {
        type: 'object', additionalProperties: false,
        properties: {
          userId: { type: 'string', pattern: ID_PATTERN },
          cursor: { type: 'string', maxLength: 300 },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
        },
      },
    },
  }, async (req) => {
    const { userId, cursor, limit } = req.query;
    const actor = req.actor;
    // a plain user sees their own mailbox's entries; admins and the ATS itself see all
    if (userId ? !canReadMailbox(actor, userId) : actor.userId !== null && !isAdmin(actor)) {
      throw new ApiError('forbidden', 'Only the mailbox owner or an admin can list its quarantine (pass ?userId= for your own mailbox).');
    }
    const page = await ctx.quarantine.list({ userId, after: cursor, limit });
    const out: Record<string, unknown>[] = [];
    for (const { record } of page) {
      const thread = record.threadId ? await ctx.threads.getThread(record.threadId) : undefined;
      if (thread && !canSeeThread(actor, thread, ctx.normalise)) continue;
      out.push(toView(record));
    }
    // a full page may have more behind it; entries hidden by secrecy still move the cursor
    const nextCursor = page.length === limit ? page[page.length - 1]!.cursor : null;
    return { entries: out, nextCursor };
  });
}
