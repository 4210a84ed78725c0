import type { FastifyBaseLogger } from 'fastify';
import { K } from '../store/keys.js';
import type { MailboxRecord } from '../store/records.js';
import type { WriteBatch } from '../store/store.js';
import type { ApiContext } from './server.js';

/**
 * Revoking a mailbox consent (DELETE /v1/users/{id}/mailbox). In this order:
 *
 * 1. the sync worker stops: LOGOUT (bounded), then the socket closes — within seconds, before
 *    anything else, so nothing is read from the mailbox after the request;
 * 2. one batch deletes the consent with its sealed credentials (password or OAuth2 access and
 *    refresh tokens) and the sync state (folder watermarks, message locations, the "look again"
 *    queue, quarantined mail, pending references) and records the revocation (and `alsoWrite`:
 *    the audit record); with no consent
 *    record the mailbox is never opened again, also after a restart, until a new consent;
 * 3. what the process remembers of the grant is forgotten, imports from the mailbox fail, and
 *    relay messages that would go out with the user's own SMTP login fail (`message.failed`);
 *    messages for a user without SMTP settings go through the organisation's smarthost, which
 *    needs no consent, and stay queued;
 * 4. with `purge`, messages seen only in this mailbox are deleted;
 * 5. LevelDB's files are compacted over the deleted ranges, so the sealed credentials are gone
 *    from the disk too (not only unreachable) when the request answers.
 */

export const REVOKED_REASON = 'the user revoked access to their mailbox';

export interface RevocationOutcome {
  revoked: MailboxRecord;
  /** Milliseconds from the start until the IMAP connection was closed. */
  disconnectMs: number;
  relayFailed: number;
  importsFailed: number;
  purged: number;
}

export async function revokeMailbox(ctx: ApiContext, userId: string, purge: boolean, log: FastifyBaseLogger, alsoWrite?: (batch: WriteBatch) => void): Promise<RevocationOutcome | null> {
  if (!(await ctx.accounts.getMailbox(userId))) return null;
  const started = Date.now();
  // stop first: the connection closes before the credentials are gone
  await ctx.supervisor.stopUser(userId);
  const disconnectMs = Date.now() - started;
  const locations = purge ? await ctx.threads.messageKeysOfUser(userId) : [];
  const revoked = await ctx.accounts.revokeConsent(userId, alsoWrite);
  if (!revoked) return null; // revoked by a request that ran at the same time
  ctx.logins?.forget(userId);
  const relayFailed = revoked.smtp && ctx.relay ? await ctx.relay.failUser(userId, REVOKED_REASON) : 0;
  const importsFailed = await ctx.imports.failUser(userId, REVOKED_REASON);
  const purged = purge ? await ctx.threads.purgeUserMessages(userId, locations) : 0;
  const ranges = [K.mailbox(userId), K.folderPrefix(userId), K.locationUserPrefix(userId), K.reconsiderUserPrefix(userId), K.quarantineUserPrefix(userId), K.pendingAll()];
  await ctx.store.compactPrefixes(relayFailed ? [...ranges, K.relayPrefix(), K.relayRaw('')] : ranges);
  if (purge) {
    // the purged messages are unreachable at once; their ranges are spread over the whole store,
    // so rewriting the files runs after the answer
    void ctx.store.compact().then(
      () => log.info({ userId }, 'store compacted after purging a revoked mailbox'),
      (err: unknown) => log.error({ err, userId }, 'compacting the store after a purge failed'),
    );
  }
  return { revoked, disconnectMs, relayFailed, importsFailed, purged };
}
