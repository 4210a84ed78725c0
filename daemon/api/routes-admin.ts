import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { backupLines } from '../ops/backup.js';
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
  app.get('/v1/admin/status', {
    schema: { summary: 'Every user\'s mailbox with state, last error, last sync and folder lag, and the outbox and relay queues' },
  }, async () => statusSnapshot(statusSources(ctx)));

  app.get('/v1/admin/backup', {
    schema: { summary: 'A consistent backup of the store (one LevelDB snapshot), streamed as lines; `mailsync backup` writes it to a directory' },
  }, async (req, reply) => {
    req.log.info('store backup started');
    reply.header('content-type', 'application/x-ndjson').header('cache-control', 'no-store');
    return reply.send(Readable.from(backupLines(ctx.store)));
  });
}
