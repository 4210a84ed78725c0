import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { isAdmin, type Actor } from './acl.js';
import { auditActor } from './routes-audit.js';
import { idParam } from './schemas.js';
import type { ApiContext } from './server.js';

/**
 * DELETE /v1/candidates/{candidateId}: a data-protection erasure (see store/erasure.ts for
 * what goes and what stays). It answers once nothing of the candidate is left in the store's
 * files, which takes about as long as LevelDB needs to rewrite the store.
 */

/**
 * Who may erase a candidate: the ATS itself (no X-Acting-User: the erasure is the ATS
 * carrying out a request it received) and admins and super admins. Not a recruiter: an
 * erasure deletes conversations from every recruiter's view, irreversibly.
 */
export function canErase(actor: Actor): boolean {
  return actor.userId === null || isAdmin(actor);
}

export function registerErasureRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.delete<{ Params: { candidateId: string } }>('/v1/candidates/:candidateId', {
    schema: {
      summary: 'Erase a candidate (data-protection request): their threads, messages and addresses leave the store and its files',
      params: idParam('candidateId'),
    },
  }, async (req, reply) => {
    const cid = req.params.candidateId;
    if (!canErase(req.actor)) {
      throw new ApiError('forbidden', 'Only the ATS itself (no X-Acting-User) or an admin or super admin can erase a candidate.');
    }
    const outcome = await ctx.erasure.erase(cid, auditActor(req)).catch((err: unknown) => {
      req.log.error({ err, candidateId: cid }, 'erasing a candidate failed');
      throw new ApiError('unavailable', 'The erasure could not be completed (the log has the details); what was erased stays erased. Send the request again.');
    });
    const { eventId, ...counts } = outcome;
    req.log.info({ ...counts, eventId }, 'candidate erased');
    return reply.status(204).send();
  });
}
