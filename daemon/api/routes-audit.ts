import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';
import type { AuditActor } from '../store/audit.js';
import { isAdmin } from './acl.js';
import type { ApiContext } from './server.js';

/**
 * GET /v1/audit: the privacy actions taken through the API (consent, secrecy, removal,
 * erasure, imports), oldest first, for admins and super admins.
 */

/** Who acts in a request, as the audit records it: the API token by its id, never itself. */
export function auditActor(req: FastifyRequest): AuditActor {
  return { userId: req.actor.userId, role: req.actor.role, client: req.client };
}

const idOrNull = { type: 'string' } as const;

const entrySchema = {
  type: 'object',
  required: ['id', 'cursor', 'at', 'action', 'actor', 'target'],
  properties: {
    id: { type: 'string' },
    cursor: { type: 'string', description: 'Pass as `after` to read the entries that follow this one.' },
    at: { type: 'string', format: 'date-time' },
    action: { type: 'string', enum: ['consent.granted', 'consent.revoked', 'thread.secret_set', 'thread.secret_unset', 'message.removed', 'candidate.erased', 'import.started'] },
    actor: {
      type: 'object',
      properties: {
        userId: { type: 'string', nullable: true },
        role: { type: 'string', enum: ['user', 'admin', 'super_admin'] },
        client: { type: 'string', description: 'Id of the API token used (tok_…), never the token' },
      },
    },
    target: {
      type: 'object',
      properties: { userId: idOrNull, candidateId: idOrNull, threadId: idOrNull, messageKey: idOrNull, importId: idOrNull },
    },
    details: { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean'], nullable: true } },
  },
} as const;

export function registerAuditRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Querystring: { after?: string; limit: number } }>('/v1/audit', {
    schema: {
      summary: 'The audit log of privacy actions (consent granted or revoked, secrecy set or unset, messages removed, candidates erased, imports started), oldest first; admins and super admins only',
      querystring: {
        type: 'object', additionalProperties: false,
        properties: {
          after: { type: 'string', pattern: '^[0-9]{0,16}$' },
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
        },
      },
      response: {
        200: {
          type: 'object', required: ['entries', 'nextCursor'],
          properties: { entries: { type: 'array', items: entrySchema }, nextCursor: { type: 'string' } },
        },
      },
    },
  }, async (req) => {
    if (!isAdmin(req.actor)) throw new ApiError('forbidden', 'Only an admin or a super admin can read the audit log (X-Acting-Role: admin or super_admin).');
    const after = req.query.after ? Number(req.query.after) : 0;
    const entries = await ctx.audit.list(after, req.query.limit);
    const last = entries[entries.length - 1];
    // like the change feed: the cursor only moves forward, so a reader can keep asking with it
    return { entries, nextCursor: last ? last.cursor : String(after) };
  });
}
