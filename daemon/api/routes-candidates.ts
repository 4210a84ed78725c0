import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { toThreadSummary } from '../shapes.js';
import { Removals } from '../store/removals.js';
import { ThreadAccess } from './acl.js';
import { auditActor } from './routes-audit.js';
import { candidateBody, daemonIdParam, idParam, pageQuery } from './schemas.js';
import type { ApiContext } from './server.js';

export function registerCandidateRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const access = new ThreadAccess(ctx.threads, ctx.normalise);
  const removals = new Removals(ctx.store, ctx.threads, ctx.accounts, ctx.normalise);
  app.put<{ Params: { candidateId: string }; Body: { emails: string[]; name?: string } }>('/v1/candidates/:candidateId', {
    schema: { summary: 'Register or update a candidate and their addresses', params: idParam('candidateId'), body: candidateBody },
  }, async (req) => {
    const cid = req.params.candidateId;
    // one batch: the candidate, its address index, and links to threads that already
    // mention its new addresses (with their thread.linked events)
    const { candidate, linked } = await ctx.store.exclusive(async () => {
      const batch = ctx.store.batch();
      const { candidate, added } = await ctx.accounts.putCandidateInBatch(batch, cid, { emails: req.body.emails, name: req.body.name ?? null });
      const linked = await ctx.threads.linkCandidateByAddresses(batch, cid, added);
      await batch.write();
      return { candidate, linked };
    });
    // the links are made whatever the actor may see (the mail is the candidate's); the count
    // names only the threads the actor may see
    let threadsLinked = 0;
    for (const threadId of linked) if (!(await access.hides(req.actor, { threadId }))) threadsLinked++;
    return { id: candidate.id, emails: candidate.emails, name: candidate.name, createdAt: candidate.createdAt, updatedAt: candidate.updatedAt, threadsLinked };
  });

  app.get<{ Params: { candidateId: string } }>('/v1/candidates/:candidateId', {
    schema: { summary: 'A candidate', params: idParam('candidateId') },
  }, async (req) => {
    const c = await ctx.accounts.getCandidate(req.params.candidateId);
    if (!c) throw new ApiError('not_found', `No candidate ${req.params.candidateId}.`);
    return { id: c.id, emails: c.emails, name: c.name, createdAt: c.createdAt, updatedAt: c.updatedAt };
  });

  app.get<{ Params: { candidateId: string }; Querystring: { limit: number; cursor?: string } }>('/v1/candidates/:candidateId/threads', {
    schema: { summary: "A candidate's threads, newest activity first, as the acting user may see them", params: idParam('candidateId'), querystring: pageQuery },
  }, async (req) => {
    const cid = req.params.candidateId;
    const limit = req.query.limit;
    const out: Array<Record<string, unknown>> = [];
    let cursor = req.query.cursor || undefined;
    let lastVisible: string | null = null;
    // Secret threads the actor may not see are skipped without counting against the page,
    // so page sizes and cursors reveal nothing about them. A next cursor is given only when
    // another visible thread follows.
    for (;;) {
      // read only what the page still needs, plus one to know whether another follows:
      // every thread read is a decryption, and a full batch of 100 doubled the cost of a page
      const page = await ctx.threads.candidateThreadPage(cid, cursor, Math.min(100, limit - out.length + 1));
      if (page.length === 0) break;
      for (const { cursor: c, thread } of page) {
        cursor = c;
        if (!access.canSee(req.actor, thread)) continue;
        if (out.length === limit) return { threads: out, nextCursor: lastVisible };
        // as the profile shows it: without the messages removed from it
        out.push(toThreadSummary((await removals.profile(cid, thread)).thread));
        lastVisible = c;
      }
    }
    return { threads: out, nextCursor: null };
  });

  app.delete<{ Params: { candidateId: string; messageKey: string } }>('/v1/candidates/:candidateId/messages/:messageKey', {
    schema: {
      summary: "Remove an email from the candidate's profile, for good (nothing in any mailbox changes)",
      params: { type: 'object', required: ['candidateId', 'messageKey'], properties: { ...idParam('candidateId').properties, ...daemonIdParam('messageKey', 'm_').properties } },
    },
  }, async (req, reply) => {
    const { candidateId, messageKey } = req.params;
    // audited in the batch of the removal; a repeat changes nothing and records nothing
    const outcome = await removals.remove(candidateId, messageKey, {
      visible: (t) => access.canSee(req.actor, t),
      by: req.actor.userId,
      alsoWrite: (batch, o) => ctx.audit.record(batch, {
        action: 'message.removed', actor: auditActor(req), target: { candidateId, messageKey, threadId: o.threadId }, details: { threadUnlinked: o.unlinked },
      }),
    });
    if (outcome.status === 'not_found') {
      // a message in a thread secret to the actor reads exactly as a message that does not exist
      const message = {
        candidate: `No candidate ${candidateId}.`,
        message: `No message ${messageKey}.`,
        link: `Message ${messageKey} is not on the profile of candidate ${candidateId}.`,
      }[outcome.what];
      throw new ApiError('not_found', message);
    }
    if (outcome.status === 'removed') req.log.info({ candidateId, messageKey, threadId: outcome.threadId, unlinked: outcome.unlinked }, 'message removed from a profile');
    return reply.status(204).send();
  });
}
