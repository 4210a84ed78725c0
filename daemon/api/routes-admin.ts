import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';
import { backupLines } from '../ops/backup.js';
import { consentLogin, doctorSettings, runDoctor } from '../ops/doctor.js';
import { assertSystemChannel } from './acl.js';
import { idParam } from './schemas.js';
import { statusSnapshot, type StatusSources } from '../ops/status.js';
import type { ApiContext } from './server.js';

/**
 * Operator endpoints under /v1/admin (same bearer tokens as the rest of /v1). The CLI uses
 * them while the daemon holds the store, since LevelDB lets one process open it.
 */

export function statusSources(ctx: ApiContext): StatusSources {
  return { accounts: ctx.accounts, outbox: ctx.outbox, push: ctx.dispatcher !== null, workers: ctx.supervisor, relayQueueDepth: ctx.relayQueueDepth };
}

export function registerAdminRoutes(app: FastifyInstance, ctx: ApiContext): void {
  // every user's mailbox, the whole store: for the operator (the ATS itself) and admins only
  const operatorOnly = async (req: FastifyRequest) => assertSystemChannel(req.actor, 'The operator endpoints (/v1/admin)');
  app.get('/v1/admin/status', {
    preHandler: operatorOnly,
    schema: { summary: 'Every user\'s mailbox with state, last error, last sync and folder lag, and the outbox and relay queues' },
  }, async () => statusSnapshot(statusSources(ctx)));

  app.get('/v1/admin/backup', {
    preHandler: operatorOnly,
    schema: { summary: 'A consistent backup of the store (one LevelDB snapshot), streamed as lines; `mailsync backup` writes it to a directory' },
  }, async (req, reply) => {
    req.log.info('store backup started');
    reply.header('content-type', 'application/x-ndjson').header('cache-control', 'no-store');
    return reply.send(Readable.from(backupLines(ctx.store)));
  });

  app.post<{ Params: { userId: string }; Querystring: { timeoutSeconds: number } }>('/v1/admin/mailboxes/:userId/doctor', {
    preHandler: operatorOnly,
    schema: {
      summary: 'Check a mailbox step by step (DNS, TCP, TLS, greeting, auth, capabilities, folders, IDLE) with its stored consent; `mailsync doctor` shows the result',
      params: idParam('userId'),
      querystring: { type: 'object', additionalProperties: false, properties: { timeoutSeconds: { type: 'integer', minimum: 1, maximum: 120, default: 10 } } },
    },
  }, async (req) => {
    const mbx = await ctx.accounts.getMailbox(req.params.userId);
    if (!mbx) throw new ApiError('not_found', `User ${req.params.userId} has not granted access to a mailbox.`);
    const { who, login } = consentLogin(ctx.store, mbx, ctx.logins);
    return runDoctor(req.params.userId, mbx, who, login, doctorSettings(ctx.config, req.query.timeoutSeconds));
  });
}
