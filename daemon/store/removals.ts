import { K, lastPart, SEP } from './keys.js';
import type { Store, WriteBatch } from './store.js';
import type { Accounts } from './accounts.js';
import type { Threads } from './threads.js';
import type { StoredMessage, ThreadRecord } from './records.js';
import { normaliseId } from '../threads/message-ids.js';

/**
 * Emails removed from a candidate's profile. A removal is a tombstone `tomb!{candidateId}!{messageKey}`
 * that outlives everything that could bring the email back to that profile: the message key is
 * the same whenever the message is seen again (it is derived from Message-ID, Date and Subject,
 * not from where the message sits), so a full resync, a UIDVALIDITY change, a re-import, a purge
 * and a new sync, or a restart find the tombstone and do not link it again. Nothing in any
 * mailbox changes, and the message stays stored for other candidates and its owners.
 *
 * What a profile shows: a thread is on a candidate's profile while it is linked to the candidate
 * (thread.candidateIds) and, of its messages, those the candidate has no tombstone for. When the
 * last of them is removed the thread is unlinked from the candidate. A new message arriving later
 * in the same conversation is a different email and links as any new email does; the removed
 * ones stay hidden.
 */

export interface TombstoneRecord {
  removedAt: string;
  /** The thread the message was in when it was removed (threads merge later; the message key is what counts). */
  threadId: string;
  /** The acting user who removed it, or null for the ATS itself. */
  by: string | null;
}

/** A message of a thread as its date-ordered index names it. */
export interface ThreadEntry {
  date: string;
  key: string;
}

/**
 * Whether a pending batch puts (true) or deletes (false) a key; undefined when it does not touch
 * it. Linking decisions are made inside batches that also move messages (thread merges, a new
 * message): they must see the thread as it will be once the batch is written.
 */
function batchSays(batch: WriteBatch | undefined, key: string): boolean | undefined {
  if (!batch) return undefined;
  for (let i = batch.ops.length - 1; i >= 0; i--) if (batch.ops[i]!.key === key) return batch.ops[i]!.type === 'put';
  return undefined;
}

/** Reads of the tombstones, for every path that links messages to candidates. Stateless. */
export class Tombstones {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Whether the candidate has any tombstone: one point read, so candidates without removals cost nothing more. */
  async any(cid: string, batch?: WriteBatch): Promise<boolean> {
    return batchSays(batch, K.tombCandidate(cid)) ?? (await this.#store.has(K.tombCandidate(cid)));
  }

  async has(cid: string, messageKey: string, batch?: WriteBatch): Promise<boolean> {
    return batchSays(batch, K.tomb(cid, messageKey)) ?? (await this.#store.has(K.tomb(cid, messageKey)));
  }

  /** Of these candidates, the ones that removed this message from their profile. */
  async removing(messageKey: string, cids: Iterable<string>): Promise<Set<string>> {
    const out = new Set<string>();
    for (const cid of new Set(cids)) if ((await this.any(cid)) && (await this.has(cid, messageKey))) out.add(cid);
    return out;
  }

  /** A thread's messages (date order), as they will be once `batch` is written. */
  async entries(threadId: string, batch?: WriteBatch): Promise<ThreadEntry[]> {
    const prefix = K.threadMessagePrefix(threadId);
    const keys = new Set(await this.#store.keys(prefix));
    for (const op of batch?.ops ?? []) {
      if (!op.key.startsWith(prefix)) continue;
      if (op.type === 'put') keys.add(op.key);
      else keys.delete(op.key);
    }
    return [...keys].sort().map((k) => {
      const rest = k.slice(prefix.length);
      return { date: rest.slice(0, rest.lastIndexOf(SEP)), key: lastPart(k) };
    });
  }

  /** The candidate's view of a thread: its messages, and which of them the candidate removed. */
  async split(cid: string, threadId: string, batch?: WriteBatch): Promise<{ shown: ThreadEntry[]; removed: ThreadEntry[] }> {
    const all = await this.entries(threadId, batch);
    if (!(await this.any(cid, batch))) return { shown: all, removed: [] };
    const shown: ThreadEntry[] = [];
    const removed: ThreadEntry[] = [];
    for (const e of all) ((await this.has(cid, e.key, batch)) ? removed : shown).push(e);
    return { shown, removed };
  }

  /**
   * Where the thread sorts on the candidate's profile ("newest activity first"): its newest
   * message there. With none there (a thread declared by the ATS before its mail arrived) the
   * thread's own activity; with only removed ones, its creation, which says nothing about them.
   */
  async activity(cid: string, thread: ThreadRecord, batch?: WriteBatch): Promise<string> {
    if (!(await this.any(cid, batch))) return thread.lastMessageAt;
    const { shown, removed } = await this.split(cid, thread.id, batch);
    if (removed.length === 0) return thread.lastMessageAt;
    return shown.length ? shown[shown.length - 1]!.date : thread.createdAt;
  }

  /** Whether the thread has messages and the candidate removed every one of them: it must not be linked again. */
  async removedWhole(cid: string, thread: ThreadRecord, batch?: WriteBatch): Promise<boolean> {
    if (!(await this.any(cid, batch))) return false;
    const { shown, removed } = await this.split(cid, thread.id, batch);
    return shown.length === 0 && removed.length > 0;
  }

  /**
   * Whether a declaration (POST /v1/outbound, the relay) of these Message-IDs into this thread
   * would bring back mail the candidate removed: true when the thread already holds messages with
   * one of these ids and the candidate removed all of them. A declared id not stored yet is a new
   * email and may link.
   */
  async declarationRemoved(cid: string, threadId: string, matchKeys: string[], batch?: WriteBatch): Promise<boolean> {
    if (!(await this.any(cid, batch))) return false;
    const wanted = new Set(matchKeys);
    const entries = await this.entries(threadId, batch);
    const msgs = await this.#store.getMany<StoredMessage>(entries.map((e) => K.message(e.key)));
    const declared = msgs.filter((m): m is StoredMessage => !!m && !!m.messageId && wanted.has(normaliseId(m.messageId)));
    if (declared.length === 0) return false;
    for (const m of declared) if (!(await this.has(cid, m.key, batch))) return false;
    return true;
  }
}

export type RemoveOutcome =
  | { status: 'removed'; threadId: string; unlinked: boolean }
  /** Removed before: a repeated DELETE answers as the first did. */
  | { status: 'already'; threadId: string }
  | { status: 'not_found'; what: 'candidate' | 'message' | 'link' };

export interface RemoveOptions {
  /** Whether the acting user may see the thread; a thread they may not see is answered as a missing message. */
  visible: (thread: ThreadRecord) => boolean;
  by: string | null;
  /** More records for the batch that makes the removal (the audit entry). */
  alsoWrite?: (batch: WriteBatch, outcome: { threadId: string; unlinked: boolean }) => void;
}

/** The thread as a candidate's profile shows it: the summary of the messages shown there. */
export interface ProfileView {
  thread: ThreadRecord;
  /** Keys of the thread's messages the candidate removed (hidden on this profile). */
  removed: Set<string>;
}

export class Removals {
  readonly #store: Store;
  readonly #threads: Threads;
  readonly #accounts: Accounts;
  readonly #normalise: (a: string) => string;
  readonly tombstones: Tombstones;

  constructor(store: Store, threads: Threads, accounts: Accounts, normalise: (a: string) => string) {
    this.#store = store;
    this.#threads = threads;
    this.#accounts = accounts;
    this.#normalise = normalise;
    this.tombstones = new Tombstones(store);
  }

  /**
   * Removes a message from a candidate's profile, in one batch: the tombstone, the candidate's
   * place of the thread in its list (moved to the newest message still shown), or, when no
   * message of the thread remains on the profile, the link itself.
   */
  remove(cid: string, messageKey: string, opts: RemoveOptions): Promise<RemoveOutcome> {
    return this.#store.exclusive(async () => {
      if (!(await this.#accounts.getCandidate(cid))) return { status: 'not_found', what: 'candidate' };
      const msg = await this.#threads.getMessage(messageKey);
      const thread = msg && (await this.#threads.getThread(msg.threadId));
      if (!msg || !thread || !opts.visible(thread)) return { status: 'not_found', what: 'message' };
      if (await this.tombstones.has(cid, messageKey)) return { status: 'already', threadId: thread.id };
      if (!thread.candidateIds.includes(cid)) return { status: 'not_found', what: 'link' };

      const batch = this.#store.batch();
      const record: TombstoneRecord = { removedAt: new Date().toISOString(), threadId: thread.id, by: opts.by };
      batch.put(K.tomb(cid, messageKey), record).put(K.tombCandidate(cid), '');
      const { shown } = await this.tombstones.split(cid, thread.id, batch);
      const old = await this.#store.get<string>(K.candThread(cid, thread.id));
      if (old) batch.del(old);
      const unlinked = shown.length === 0;
      if (unlinked) {
        thread.candidateIds = thread.candidateIds.filter((c) => c !== cid);
        batch.del(K.candThread(cid, thread.id)).put(K.thread(thread.id), thread);
      } else {
        const next = K.candActivity(cid, await this.tombstones.activity(cid, thread, batch), thread.id);
        batch.put(next, '').put(K.candThread(cid, thread.id), next);
      }
      opts.alsoWrite?.(batch, { threadId: thread.id, unlinked });
      await batch.write();
      return { status: 'removed', threadId: thread.id, unlinked };
    });
  }

  /**
   * The thread as the candidate's profile shows it. Without removals in it, the thread as it is;
   * with some, its count, newest date, snippet and participants come from the messages shown
   * there only, so the summary says nothing of what was removed.
   */
  async profile(cid: string, thread: ThreadRecord, messages?: StoredMessage[]): Promise<ProfileView> {
    if (!(await this.tombstones.any(cid))) return { thread, removed: new Set() };
    const { removed } = await this.tombstones.split(cid, thread.id);
    if (removed.length === 0) return { thread, removed: new Set() };
    const hidden = new Set(removed.map((e) => e.key));
    const shown = (messages ?? (await this.#threads.threadMessages(thread.id))).filter((m) => !hidden.has(m.key));
    return { thread: profileSummary(thread, shown, this.#normalise), removed: hidden };
  }
}

/**
 * A thread's summary computed from some of its messages (those shown on a profile, in date
 * order). Participants keep the thread's order, limited to the addresses these messages carry.
 */
export function profileSummary(thread: ThreadRecord, shown: StoredMessage[], normalise: (a: string) => string): ThreadRecord {
  const last = shown[shown.length - 1];
  const present = new Set(shown.flatMap((m) => [m.from, ...m.to, ...m.cc]).filter((a): a is NonNullable<typeof a> => !!a && !!a.address).map((a) => normalise(a.address)));
  return {
    ...thread,
    messageCount: shown.length,
    lastMessageAt: last ? last.date : thread.createdAt,
    snippet: last ? last.snippet : '',
    participants: thread.participants.filter((p) => present.has(normalise(p))),
  };
}
