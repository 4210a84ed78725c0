import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';
import { toApiMessage, toThreadSummary } from '../shapes.js';
import { extractAttachment } from '../mail/parse.js';
import { normaliseId } from '../threads/message-ids.js';
import type { StoredMessage, ThreadRecord } from '../store/records.js';
import { canUnsetSecret, ThreadAccess } from './acl.js';
import { ID_PATTERN, daemonIdParam, outboundBody } from './schemas.js';
import { Removals } from '../store/removals.js';
import type { ApiContext } from './server.js';
import { auditActor } from './routes-audit.js';

export function registerThreadRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const access = new ThreadAccess(ctx.threads, ctx.normalise);
  const removals = new Removals(ctx.store, ctx.threads, ctx.accounts, ctx.normalise);
  /** The thread, or 404 — also when it exists but is secret to this actor. */
  const visibleThread = (req: FastifyRequest, id: string): Promise<ThreadRecord> => access.thread(req.actor, id);
  const visibleMessage = async (req: FastifyRequest, key: string): Promise<StoredMessage> => (await access.message(req.actor, key)).message;

  const threadParam = daemonIdParam('threadId', 't_');
  const messageParam = daemonIdParam('messageKey', 'm_');

  app.get<{ Params: { threadId: string }; Querystring: { candidateId?: string } }>('/v1/threads/:threadId', {
    schema: {
      summary: 'A thread with its messages in date order; with candidateId, as that candidate\'s profile shows it',
      params: threadParam,
      querystring: { type: 'object', additionalProperties: false, properties: { candidateId: { type: 'string', pattern: ID_PATTERN } } },
    },
  }, async (req) => {
    const t = await visibleThread(req, req.params.threadId);
    const messages = await ctx.threads.threadMessages(t.id);
    const cid = req.query.candidateId;
    if (cid === undefined) return { ...toThreadSummary(t), secretBy: t.secretBy, messages: messages.map((m) => toApiMessage(m)) };
    // the profile's view: the messages removed from it are left out, and the summary is of the rest
    if (!t.candidateIds.includes(cid)) throw new ApiError('not_found', `Thread ${t.id} is not on the profile of candidate ${cid}.`);
    const { thread, removed } = await removals.profile(cid, t, messages);
    return { ...toThreadSummary(thread), secretBy: t.secretBy, messages: messages.filter((m) => !removed.has(m.key)).map((m) => toApiMessage(m)) };
  });

  app.put<{ Params: { threadId: string } }>('/v1/threads/:threadId/secret', {
    schema: { summary: 'Make a thread secret (the acting user becomes secretBy)', params: threadParam },
  }, async (req) => {
    if (!req.actor.userId) throw new ApiError('invalid_request', 'X-Acting-User is required: the acting user becomes the one who made the thread secret.');
    const t = await visibleThread(req, req.params.threadId);
    // already secret: it stays the secret of the one who made it so (a participant asking again
    // must not take over the right to unset it, nor shut that person out); nothing changes, so
    // nothing is audited
    const updated = t.secret ? t : await ctx.threads.setSecret(t.id, req.actor.userId, (batch) => ctx.audit.record(batch, {
      action: 'thread.secret_set', actor: auditActor(req), target: { threadId: t.id },
    }));
    return { ...toThreadSummary(updated), secretBy: updated.secretBy };
  });

  app.delete<{ Params: { threadId: string } }>('/v1/threads/:threadId/secret', {
    schema: { summary: 'Make a thread visible again', params: threadParam },
  }, async (req, reply) => {
    const t = await visibleThread(req, req.params.threadId);
    if (t.secret && !canUnsetSecret(req.actor, t)) throw new ApiError('forbidden', 'Only the user who made this thread secret, an admin or a super admin can make it visible again.');
    // a thread that was not secret stays as it was: nothing to record
    if (t.secret) {
      await ctx.threads.setSecret(t.id, null, (batch) => ctx.audit.record(batch, {
        action: 'thread.secret_unset', actor: auditActor(req), target: { threadId: t.id }, details: { secretBy: t.secretBy },
      }));
    }
    return reply.status(204).send();
  });

  app.get<{ Params: { messageKey: string } }>('/v1/messages/:messageKey', {
    schema: { summary: 'A message', params: messageParam },
  }, async (req) => toApiMessage(await visibleMessage(req, req.params.messageKey)));

  app.get<{ Params: { messageKey: string } }>('/v1/messages/:messageKey/raw', {
    schema: { summary: 'The original RFC 5322 bytes', params: messageParam },
  }, async (req, reply) => {
    const m = await visibleMessage(req, req.params.messageKey);
    const raw = m.rawStored ? await ctx.threads.getRaw(m.key) : undefined;
    if (!raw) throw new ApiError('not_found', `The original of ${m.key} is not kept (it is larger than store.maxRawBytes, ${ctx.config.store.maxRawBytes} bytes).`);
    return reply.header('content-type', 'message/rfc822').header('content-disposition', `attachment; filename="${m.key}.eml"`).send(raw);
  });

  app.get<{ Params: { messageKey: string; attachmentId: string } }>('/v1/messages/:messageKey/attachments/:attachmentId', {
    schema: {
      summary: 'The bytes of an attachment',
      params: { type: 'object', required: ['messageKey', 'attachmentId'], properties: { ...messageParam.properties, attachmentId: { type: 'string', pattern: '^a_[0-9]{1,6}$' } } },
    },
  }, async (req, reply) => {
    const m = await visibleMessage(req, req.params.messageKey);
    const meta = m.attachments.find((a) => a.id === req.params.attachmentId);
    if (!meta) throw new ApiError('not_found', `Message ${m.key} has no attachment ${req.params.attachmentId}.`);
    const raw = m.rawStored ? await ctx.threads.getRaw(m.key) : undefined;
    if (!raw) throw new ApiError('not_found', `The original of ${m.key} is not kept, so its attachments cannot be served.`);
    const att = await extractAttachment(raw, meta.index, ctx.config.sync.parseTimeoutMs);
    if (!att) throw new ApiError('not_found', `Attachment ${meta.id} cannot be read from the original.`);
    const name = (att.filename ?? meta.filename ?? meta.id).replace(/[\r\n"]/g, '_');
    return reply
      .header('content-type', meta.contentType)
      .header('content-length', att.content.length)
      .header('content-disposition', `attachment; filename="${name.replace(/[^\x20-\x7e]/g, '_')}"; filename*=UTF-8''${encodeURIComponent(name)}`)
      .send(att.content);
  });

  app.post<{ Body: { userId: string; messageId: string; candidateIds: string[]; subject?: string } }>('/v1/outbound', {
    schema: { summary: 'Declare a message the ATS sent itself, so replies to it are tracked', body: outboundBody },
  }, async (req, reply) => {
    const { userId, messageId, candidateIds, subject } = req.body;
    if (!(await ctx.accounts.getUser(userId))) throw new ApiError('not_found', `No user ${userId}: register it first with PUT /v1/users/${userId}.`);
    const matchKeys = [normaliseId(messageId)];
    // a Message-ID of a thread secret to this actor: refused before anything changes, with no
    // word of the thread (declaring into it would show its summary)
    const hidden = new ApiError('not_found', `Message-ID ${messageId} cannot be declared for this acting user.`);
    for (const threadId of new Set((await ctx.threads.lookup(matchKeys)).values())) {
      if (await access.hides(req.actor, { threadId })) throw hidden;
    }
    const thread = await ctx.threads.declareOutbound({ userId, matchKeys, candidateIds, subject });
    if (!access.canSee(req.actor, thread)) throw hidden;
    return reply.status(201).send(toThreadSummary(thread));
  });
}
