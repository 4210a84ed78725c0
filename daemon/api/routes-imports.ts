import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { toThreadSummary } from '../shapes.js';
import { toImportView } from '../sync/import-job.js';
import { canReadMailbox, isSelf, ThreadAccess, type Actor } from './acl.js';
import type { ImportRecord } from '../store/records.js';
import { ID_PATTERN, daemonIdParam, idParam, messageIdString } from './schemas.js';
import type { ApiContext } from './server.js';
import { auditActor } from './routes-audit.js';

/** Older conversations: imports per candidate, and linking one conversation by Message-ID. */
export function registerImportRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const access = new ThreadAccess(ctx.threads, ctx.normalise);

  /** The import as `actor` may see it: its counts leave out threads secret to them. */
  async function importViewFor(actor: Actor, job: ImportRecord): Promise<Record<string, unknown>> {
    const view = toImportView(job) as Record<string, unknown> & { matched: number; imported: number; threadsLinked: number };
    for (const t of job.threads ?? []) {
      if (!(await access.hides(actor, t))) continue;
      view.matched -= t.matched;
      view.imported -= t.imported;
      if (t.linked) view.threadsLinked -= 1;
    }
    return view;
  }

  async function checkOwnerAndCandidate(actor: Actor, userId: string, candidateId: string): Promise<void> {
    if (!isSelf(actor, userId)) throw new ApiError('forbidden', 'Only the mailbox owner can import from it (X-Acting-User must be the userId of the body).');
    if (!(await ctx.accounts.getCandidate(candidateId))) throw new ApiError('not_found', `No candidate ${candidateId}.`);
    if (await ctx.accounts.getMailbox(userId)) return;
    const revokedAt = await ctx.accounts.revokedAt(userId);
    if (revokedAt) throw new ApiError('conflict', `User ${userId} revoked access to their mailbox at ${revokedAt}: nothing is read from it until they grant access again (PUT /v1/users/${userId}/mailbox).`);
    throw new ApiError('conflict', `User ${userId} has not granted access to a mailbox.`);
  }

  app.post<{ Params: { candidateId: string }; Body: { userId: string; since?: string } }>('/v1/candidates/:candidateId/imports', {
    schema: {
      summary: 'Import older conversations with this candidate from one user\'s mailbox',
      params: idParam('candidateId'),
      body: {
        type: 'object', additionalProperties: false, required: ['userId'],
        properties: { userId: { type: 'string', pattern: ID_PATTERN }, since: { type: 'string', format: 'date-time' } },
      },
    },
  }, async (req, reply) => {
    const { candidateId } = req.params;
    await checkOwnerAndCandidate(req.actor, req.body.userId, candidateId);
    const since = req.body.since ? new Date(req.body.since).toISOString() : null;
    const job = await ctx.imports.create(req.body.userId, candidateId, since, (batch, created) => ctx.audit.record(batch, {
      action: 'import.started', actor: auditActor(req), target: { userId: created.userId, candidateId, importId: created.id }, details: { since },
    }));
    req.log.info({ importId: job.id, userId: job.userId, candidateId }, 'import queued');
    return reply.status(202).send(toImportView(job));
  });

  app.get<{ Params: { importId: string } }>('/v1/imports/:importId', {
    schema: { summary: 'Progress and outcome of an import', params: daemonIdParam('importId', 'imp_') },
  }, async (req) => {
    const job = await ctx.imports.get(req.params.importId);
    if (!job) throw new ApiError('not_found', `No import ${req.params.importId}.`);
    if (!canReadMailbox(req.actor, job.userId)) throw new ApiError('not_found', `No import ${req.params.importId}.`);
    return importViewFor(req.actor, job);
  });

  app.post<{ Params: { candidateId: string }; Body: { userId: string; messageId: string } }>('/v1/candidates/:candidateId/threads', {
    schema: {
      summary: 'Link a conversation from the user\'s mailbox to this candidate, by Message-ID',
      params: idParam('candidateId'),
      body: {
        type: 'object', additionalProperties: false, required: ['userId', 'messageId'],
        properties: { userId: { type: 'string', pattern: ID_PATTERN }, messageId: messageIdString },
      },
    },
  }, async (req, reply) => {
    const { candidateId } = req.params;
    await checkOwnerAndCandidate(req.actor, req.body.userId, candidateId);
    let thread;
    try {
      thread = await ctx.imports.link(req.body.userId, candidateId, req.body.messageId.trim());
    } catch (err) {
      if ((err as { code?: string }).code === 'CANDIDATE_ERASED') throw new ApiError('not_found', `No candidate ${candidateId}.`);
      throw new ApiError('unavailable', `The mailbox cannot be searched now: ${(err as Error).message}`);
    }
    if (!thread || !access.canSee(req.actor, thread)) throw new ApiError('not_found', `No message ${req.body.messageId} in the mailbox of ${req.body.userId}.`);
    if (!thread.candidateIds.includes(candidateId)) {
      throw new ApiError('conflict', `The conversation of ${req.body.messageId} was removed from the profile of candidate ${candidateId} (DELETE /v1/candidates/${candidateId}/messages/...); a removal lasts, so it is not linked again.`);
    }
    req.log.info({ userId: req.body.userId, candidateId, threadId: thread.id }, 'conversation linked');
    return reply.status(201).send(toThreadSummary(thread));
  });
}
