import type { Accounts } from '../store/accounts.js';
import type { Outbox } from '../store/outbox.js';
import type { MailboxError, MailboxState } from '../store/records.js';

/**
 * One picture of the daemon for people: every user's mailbox with its state, last error, last
 * sync and per-folder lag, and the depth of the outbox and relay queues. The status page, the
 * admin API and `mailsync users` all show this same snapshot.
 */

export interface FolderStatus {
  path: string;
  specialUse: string | null;
  uidNext: number;
  /** When the stored watermark last moved or was saved. */
  syncedAt: string;
  /** When the running worker last confirmed the folder up to date; null when no worker runs. */
  checkedAt: string | null;
  /** Seconds since `checkedAt`. */
  lagSeconds: number | null;
}

export interface MailboxStatusRow {
  userId: string;
  email: string | null;
  /** `none`: a registered user who has not granted access. */
  state: MailboxState | 'none';
  lastError: MailboxError | null;
  lastSyncAt: string | null;
  grantedAt: string | null;
  imapHost: string | null;
  /** Whether a sync worker runs for it in this process (null: unknown, the daemon is not running). */
  running: boolean | null;
  folders: FolderStatus[];
}

export interface StatusSnapshot {
  generatedAt: string;
  /** `daemon`: read from the running daemon; `store`: read from the store with no daemon running. */
  source: 'daemon' | 'store';
  mailboxes: MailboxStatusRow[];
  counts: Partial<Record<MailboxState | 'none', number>>;
  queues: {
    outbox: { queued: number; push: boolean };
    /** Null when the relay is not running. */
    relay: { queued: number } | null;
  };
}

export interface StatusSources {
  accounts: Accounts;
  outbox: Outbox;
  /** Whether webhooks are pushed (webhooks.url set); otherwise events wait in the change feed. */
  push: boolean;
  /** The running daemon's workers; absent when read from the store alone. */
  workers?: { has(userId: string): boolean; folderChecks(userId: string): ReadonlyMap<string, number> | undefined; lastSyncAt(userId: string): string | null };
  relayQueueDepth?: () => Promise<number> | number;
}

/** Number of consenting mailboxes in each state. */
export async function mailboxStateCounts(accounts: Accounts): Promise<Partial<Record<MailboxState, number>>> {
  const counts: Partial<Record<MailboxState, number>> = {};
  for (const m of await accounts.listMailboxes()) counts[m.state] = (counts[m.state] ?? 0) + 1;
  return counts;
}

export async function statusSnapshot(src: StatusSources, now = Date.now()): Promise<StatusSnapshot> {
  const [users, mailboxes] = await Promise.all([src.accounts.listUsers(), src.accounts.listMailboxes()]);
  const byUser = new Map(mailboxes.map((m) => [m.userId, m]));
  const ids = [...new Set([...users.map((u) => u.id), ...mailboxes.map((m) => m.userId)])].sort();
  const emails = new Map(users.map((u) => [u.id, u.email]));
  const rows: MailboxStatusRow[] = [];
  for (const userId of ids) {
    const mbx = byUser.get(userId);
    const revoked = !mbx && (await src.accounts.revokedAt(userId)) !== null;
    const checks = src.workers?.folderChecks(userId);
    const folders = mbx ? await src.accounts.listFolders(userId) : [];
    rows.push({
      userId,
      email: emails.get(userId) ?? null,
      state: mbx ? mbx.state : revoked ? 'revoked' : 'none',
      lastError: mbx?.lastError ?? null,
      lastSyncAt: (mbx && src.workers?.lastSyncAt(userId)) ?? mbx?.lastSyncAt ?? null,
      grantedAt: mbx?.consent.grantedAt ?? null,
      imapHost: mbx ? `${mbx.imap.host}:${mbx.imap.port}` : null,
      running: src.workers ? src.workers.has(userId) : null,
      folders: folders.map((f) => {
        const at = checks?.get(f.path);
        return {
          path: f.path, specialUse: f.specialUse, uidNext: f.uidNext, syncedAt: f.syncedAt,
          checkedAt: at ? new Date(at).toISOString() : null,
          lagSeconds: at ? Math.max(0, Math.round((now - at) / 1000)) : null,
        };
      }),
    });
  }
  const counts: StatusSnapshot['counts'] = {};
  for (const r of rows) counts[r.state] = (counts[r.state] ?? 0) + 1;
  return {
    generatedAt: new Date(now).toISOString(),
    source: src.workers ? 'daemon' : 'store',
    mailboxes: rows,
    counts,
    queues: {
      outbox: { queued: (await src.outbox.queued(1_000_000)).length, push: src.push },
      relay: src.relayQueueDepth ? { queued: await src.relayQueueDepth() } : null,
    },
  };
}
