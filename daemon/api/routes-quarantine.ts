import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { QUARANTINE_REASONS, type QuarantineRecord } from '../store/quarantine.js';
import { canReadMailbox, isAdmin, ThreadAccess, type Actor } from './acl.js';
import { ID_PATTERN } from './schemas.js';
import type { ApiContext } from './server.js';

/**
 * GET /v1/quarantine: mail that was not taken in as it should be, with the reason — for the
 * mailbox owner, admins, or the ATS itself. An entry of a secret thread is listed only to
 * those who may see the thread, and pages skip hidden entries without counting them, so page
 * sizes and cursors say nothing of them.
 */

/** Entries of one mailbox (or all) the actor may see, from a cursor; `limit` of them at most. */
export async function visibleQuarantine(ctx: ApiContext, access: ThreadAccess, actor: Actor, opts: { userId?: string; after?: string; limit: number }): Promise<{ entries: QuarantineRecord[]; nextCursor: string | null }> {
  const entries: QuarantineRecord[] = [];
  let after = opts.after;
  let lastShown: string | null = null;
  for (;;) {
    // one more than the page still needs, to know whether another visible entry follows
    const page = await ctx.quarantine.list({ userId: opts.userId, after, limit: Math.min(500, opts.limit - entries.length + 1) });
    if (page.length === 0) return { entries, nextCursor: null };
    for (const { cursor, record } of page) {
      after = cursor;
      if (await access.hides(actor, { threadId: record.threadId, messageKey: record.messageKey })) continue;
      if (entries.length === opts.limit) return { entries, nextCursor: lastShown };
      entries.push(record);
      lastShown = cursor;
    }
  }
}

function toView(r: QuarantineRecord): Record<string, unknown> {
  return {
    id: r.id, userId: r.userId, folder: r.folder, uidValidity: r.uidValidity, uid: r.uid, messageKey: r.threadId ? r.messageKey : null,
    messageId: r.messageId, threadId: r.threadId, stored: r.threadId !== null, reason: r.reason, explanation: QUARANTINE_REASONS[r.reason],
    detail: r.detail, size: r.size, at: r.at,
  };
}

export function registerQuarantineRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const access = new ThreadAccess(ctx.threads, ctx.normalise);
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
    const { entries, nextCursor } = await visibleQuarantine(ctx, access, actor, { userId, after: cursor, limit });
    return { entries: entries.map(toView), nextCursor };
  });
}
