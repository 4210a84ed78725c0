import dns from 'node:dns/promises';
import net from 'node:net';
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import type { MailAuth, MailboxCredentials, MailboxRecord, ServerSettings } from '../store/records.js';
import { canReadMailbox, canRevoke, isSelf, ThreadAccess, type Actor } from './acl.js';
import { revokeMailbox } from './revocation.js';
import { visibleQuarantine } from './routes-quarantine.js';
import { consentBody, idParam, userBody } from './schemas.js';
import { auditActor } from './routes-audit.js';
import type { ApiContext } from './server.js';

interface ServerBody { host: string; port: number; secure?: boolean; auth: MailAuth }
interface ConsentBody { imap: ServerBody; smtp?: ServerBody; syncSince?: string }

function toUserView(u: { id: string; email: string; aliases: string[]; name: string | null; createdAt: string; updatedAt: string }) {
  return { id: u.id, email: u.email, aliases: u.aliases, name: u.name, createdAt: u.createdAt, updatedAt: u.updatedAt };
}

export function registerUserRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.put<{ Params: { userId: string }; Body: { email: string; aliases: string[]; name?: string } }>('/v1/users/:userId', {
    schema: { summary: 'Register or update an ATS user', params: idParam('userId'), body: userBody },
  }, async (req) => {
    const user = await ctx.accounts.putUser(req.params.userId, { email: req.body.email, aliases: req.body.aliases ?? [], name: req.body.name ?? null });
    return toUserView(user);
  });

  app.get<{ Params: { userId: string } }>('/v1/users/:userId', {
    schema: { summary: 'An ATS user', params: idParam('userId') },
  }, async (req) => {
    const user = await ctx.accounts.getUser(req.params.userId);
    if (!user) throw new ApiError('not_found', `No user ${req.params.userId}.`);
    return toUserView(user);
  });

  app.put<{ Params: { userId: string }; Body: ConsentBody }>('/v1/users/:userId/mailbox', {
    schema: { summary: 'Grant consent: the user opts in to mailbox sync', params: idParam('userId'), body: consentBody },
  }, async (req, reply) => {
    const { userId } = req.params;
    if (!isSelf(req.actor, userId)) throw new ApiError('forbidden', 'Only the user themselves can grant access to their mailbox (X-Acting-User must be this user).');
    if (!(await ctx.accounts.getUser(userId))) throw new ApiError('not_found', `No user ${userId}: register it first with PUT /v1/users/${userId}.`);
    const body = req.body;
    for (const [name, server] of [['imap', body.imap], ['smtp', body.smtp]] as const) {
      const auth = server?.auth;
      if (auth && 'oauth2' in auth && !auth.oauth2.accessToken && !auth.oauth2.refreshToken) {
        throw new ApiError('invalid_request', `${name}.auth.oauth2 needs an accessToken, a refreshToken or both.`);
      }
    }
    await assertResolves(body.imap.host, 'imap.host');
    if (body.smtp) await assertResolves(body.smtp.host, 'smtp.host');
    const since = body.syncSince ? new Date(body.syncSince) : new Date(Date.now() - ctx.config.sync.initialWindowDays * 86_400_000);
    if (!Number.isFinite(since.getTime())) throw new ApiError('invalid_request', 'syncSince must be an ISO 8601 date-time.');
    const settings = (s: ServerBody): ServerSettings => ({ host: s.host, port: s.port, secure: s.secure ?? true });
    const creds: MailboxCredentials = { imap: body.imap.auth, smtp: body.smtp?.auth ?? null };
    await ctx.accounts.grantConsent({
      userId,
      consent: { grantedAt: new Date().toISOString() },
      imap: settings(body.imap),
      smtp: body.smtp ? settings(body.smtp) : null,
      sealedCredentials: ctx.store.sealSecret(creds),
      syncSince: since.toISOString(),
    }, (batch) => ctx.audit.record(batch, {
      action: 'consent.granted', actor: auditActor(req), target: { userId },
      details: { oauth2: 'oauth2' in body.imap.auth, smtp: !!body.smtp },
    }));
    req.log.info({ userId, host: body.imap.host }, 'mailbox consent granted');
    await ctx.supervisor.restart(userId);
    return reply.status(202).send(await mailboxStatus(ctx, userId, req.actor));
  });

  app.get<{ Params: { userId: string } }>('/v1/users/:userId/mailbox', {
    schema: { summary: 'Mailbox sync status', params: idParam('userId') },
  }, async (req) => {
    if (!canReadMailbox(req.actor, req.params.userId)) throw new ApiError('forbidden', 'Only the user themselves or an admin can read this mailbox status.');
    return mailboxStatus(ctx, req.params.userId, req.actor);
  });

  app.delete<{ Params: { userId: string }; Querystring: { purge?: boolean } }>('/v1/users/:userId/mailbox', {
    schema: {
      summary: 'Revoke consent: stop syncing and destroy the credentials',
      params: idParam('userId'),
      querystring: { type: 'object', additionalProperties: false, properties: { purge: { type: 'boolean', default: false } } },
    },
  }, async (req, reply) => {
    const { userId } = req.params;
    if (!canRevoke(req.actor, userId)) throw new ApiError('forbidden', 'Only the user themselves or a super admin can revoke access to this mailbox.');
    const purge = !!req.query.purge;
    const done = await revokeMailbox(ctx, userId, purge, req.log, (batch) => ctx.audit.record(batch, {
      action: 'consent.revoked', actor: auditActor(req), target: { userId }, details: { purge },
    }));
    if (!done) throw new ApiError('not_found', `User ${userId} has not granted access to a mailbox.`);
    req.log.info({ userId, purge, disconnectMs: done.disconnectMs, relayFailed: done.relayFailed, importsFailed: done.importsFailed, purged: done.purged }, 'mailbox consent revoked');
    return reply.status(204).send();
  });
}

async function assertResolves(host: string, field: string): Promise<void> {
  if (net.isIP(host.replace(/^\[|\]$/g, ''))) return;
  try {
    await dns.lookup(host);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'EAI_NONAME' || code === 'EAI_FAIL') {
      throw new ApiError('unprocessable', `${field}: the host name "${host}" does not resolve.`);
    }
  }
}

/** The mailbox status as `actor` may see it: its counts leave out threads secret to them. */
export async function mailboxStatus(ctx: ApiContext, userId: string, actor: Actor): Promise<Record<string, unknown>> {
  const mbx: MailboxRecord | undefined = await ctx.accounts.getMailbox(userId);
  if (!mbx) {
    const revokedAt = await ctx.accounts.revokedAt(userId);
    if (!revokedAt) throw new ApiError('not_found', `User ${userId} has not granted access to a mailbox.`);
    return { userId, consent: null, state: 'revoked', lastError: null, lastSyncAt: null, folders: [], counts: { threads: 0, messages: 0 }, revokedAt };
  }
  const folders = await ctx.accounts.listFolders(userId);
  const access = new ThreadAccess(ctx.threads, ctx.normalise);
  return {
    userId,
    consent: mbx.consent,
    state: mbx.state,
    lastError: mbx.lastError,
    // the running worker's is fresher: the store's is written every few minutes only
    lastSyncAt: ctx.supervisor.lastSyncAt(userId) ?? mbx.lastSyncAt,
    imap: mbx.imap,
    smtp: mbx.smtp,
    syncSince: mbx.syncSince,
    folders: folders.map((f) => ({ path: f.path, specialUse: f.specialUse, uidValidity: f.uidValidity, uidNext: f.uidNext, syncedAt: f.syncedAt })),
    counts: { ...(await ctx.threads.countsForUser(userId, (t) => access.canSee(actor, t))), quarantined: await visibleQuarantineCount(ctx, access, actor, userId) },
  };
}

async function visibleQuarantineCount(ctx: ApiContext, access: ThreadAccess, actor: Actor, userId: string): Promise<number> {
  let count = 0;
  let after: string | undefined;
  for (;;) {
    const page = await visibleQuarantine(ctx, access, actor, { userId, after, limit: 500 });
    count += page.entries.length;
    if (page.nextCursor === null) return count;
    after = page.nextCursor;
  }
}
