import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';
import { isAdmin } from './acl.js';
import type { ApiContext } from './server.js';

/**
 * The encryption keys at rest, for `mailsync keys status | rotate` while the daemon holds the
 * store. Operator endpoints: the ATS's token with no acting user, or an admin. Nothing here
 * ever shows key material.
 */

function assertOperator(req: FastifyRequest): void {
  if (req.actor.userId !== null && !isAdmin(req.actor)) throw new ApiError('forbidden', 'Managing the encryption keys is for operators and admins (X-Acting-Role admin or super_admin).');
}

export function registerKeyRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get('/v1/admin/keys', {
    schema: { summary: 'The encryption keys at rest: ids, which is current, how many sealed values each holds, and the last rotation; `mailsync keys status` shows it' },
  }, async (req) => {
    assertOperator(req);
    return ctx.keys.status();
  });

  app.post<{ Body: { batchSize?: number; pauseMs?: number } | undefined }>('/v1/admin/keys/rotate', {
    schema: {
      summary: 'Start a key rotation: a new key becomes current, every sealed value is re-sealed under it in batches while the daemon works on, then older keys leave the key file; `mailsync keys rotate` starts it and follows it',
      body: {
        type: 'object', additionalProperties: false,
        properties: { batchSize: { type: 'integer', minimum: 1, maximum: 10_000 }, pauseMs: { type: 'integer', minimum: 0, maximum: 60_000 } },
      },
    },
  }, async (req, reply) => {
    assertOperator(req);
    if (ctx.keys.state?.state === 'running') throw new ApiError('conflict', 'A key rotation is already running; GET /v1/admin/keys shows its progress.');
    if (!ctx.store.keyring.file) {
      throw new ApiError('unprocessable', 'The key comes from store.key (MAILSYNC_STORE_KEY), which mailsync cannot change: put the key into store.keyFile, unset store.key, restart, and rotate then.');
    }
    const state = ctx.keys.start({ batchSize: req.body?.batchSize, pauseMs: req.body?.pauseMs });
    req.log.info({ batchSize: req.body?.batchSize ?? null }, 'key rotation requested');
    return reply.status(202).send(state);
  });
}
