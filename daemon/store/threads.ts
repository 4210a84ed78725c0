import crypto from 'node:crypto';
import { K, lastPart, unesc } from './keys.js';
import type { Store, WriteBatch } from './store.js';
import type { Outbox } from './outbox.js';
import type { Accounts } from './accounts.js';
import type { PendingRef, SeenIn, StoredMessage, ThreadOrigin, ThreadRecord } from './records.js';
import type { ParsedMessage } from '../mail/parse.js';
import { toApiMessage } from '../shapes.js';
import { quarantineRecord, type QuarantineInput } from './quarantine.js';
import { Tombstones } from './removals.js';

/**
 * Threads and messages: the one place that turns "this message belongs to a tracked thread"
 * into records. Every change is one batch (message, indexes, thread, events) under the
 * store lock, so a crash leaves either all of it or none.
 */

export interface Location {
  userId: string;
  folder: string;
  uidValidity: string;
  uid: number;
}

export interface IngestInput {
  key: string;
  matchKeys: string[];
  parsed: ParsedMessage;
  raw: Buffer | null;
  location: Location | null;
  /** The mailbox owner the message was seen for (webhook `userId`). */
  userId: string;
  folder: string;
  origin: ThreadOrigin;
  /** Store even when no key is tracked (imports, links). */
  force?: boolean;
  candidateIds?: string[];
  /** Listed in the quarantine, in the batch that stores the message (it was only partly readable). */
  quarantine?: Pick<QuarantineInput, 'reason' | 'detail'>;
  /** More records for the same batch, whatever the outcome (the relay's queue entry leaving). */
  alsoWrite?: (batch: WriteBatch) => void;
}

/** A thread the ATS (or the relay) announces before any of its mail is seen. */
export interface OutboundDeclaration {
  userId: string;
  matchKeys: string[];
  candidateIds: string[];
  subject?: string;
}

export type IngestResult =
  | { status: 'untracked' }
  | { status: 'duplicate'; key: string; threadId: string }
  | { status: 'stored'; key: string; threadId: string; eventId: string; ownKeys: string[]; reconsider: Location[] };

export interface ThreadsOptions {
  isAtsKey: (matchKey: string) => boolean;
  normalise: (address: string) => string;
  maxRawBytes: number;
}

export function newThreadId(): string {
  return `t_${Date.now().toString(36)}${crypto.randomBytes(6).toString('hex')}`;
}

/**
 * The key of a message: the same message seen in two folders or two mailboxes gets the
 * same key (Message-ID, Date and Subject agree), while different messages reusing one
 * Message-ID (B12) do not. Mail without a Message-ID is keyed by where it was seen (B02).
 */
export function messageKey(normId: string | null, dateHeader: string | null, subjectHeader: string | null, fallback: string): string {
  const basis = normId ? `id\n${normId}\n${(dateHeader ?? '').trim()}\n${(subjectHeader ?? '').replace(/\s+/g, ' ').trim()}` : `loc\n${fallback}`;
  return `m_${crypto.createHash('sha256').update(basis).digest('base64url').slice(0, 26)}`;
}

/**
 * Date order, and for messages with the same Date (headers have one-second resolution; a
 * quick reply often shares its parent's second) the conversation's own order: a message
 * before the ones that reference it, then the order mailsync stored them in.
 */
export function conversationOrder<T extends Pick<StoredMessage, 'date' | 'messageId' | 'inReplyTo' | 'references' | 'createdAt'>>(msgs: T[]): T[] {
  const depth = (m: T) => new Set([...m.references, ...(m.inReplyTo ? [m.inReplyTo] : [])]).size;
  const refersTo = (a: T, b: T) => !!b.messageId && (a.inReplyTo === b.messageId || a.references.includes(b.messageId));
  return [...msgs].sort((a, b) => {
    if (a.date !== b.date) return a.date < b.date ? -1 : 1;
    if (refersTo(a, b)) return 1;
    if (refersTo(b, a)) return -1;
    return depth(a) - depth(b) || a.createdAt.localeCompare(b.createdAt);
  });
}

export class Threads {
  readonly #store: Store;
  readonly #outbox: Outbox;
  readonly #accounts: Accounts;
  readonly #opts: ThreadsOptions;
  /** Emails removed from profiles: every way of linking a candidate asks them. */
  readonly #tombstones: Tombstones;

  constructor(store: Store, outbox: Outbox, accounts: Accounts, opts: ThreadsOptions) {
    this.#store = store;
    this.#outbox = outbox;
    this.#accounts = accounts;
    this.#opts = opts;
    this.#tombstones = new Tombstones(store);
  }

  getThread(id: string): Promise<ThreadRecord | undefined> {
    return this.#store.get<ThreadRecord>(K.thread(id));
  }

  getMessage(key: string): Promise<StoredMessage | undefined> {
    return this.#store.get<StoredMessage>(K.message(key));
  }

  getRaw(key: string): Promise<Buffer | undefined> {
    return this.#store.getBytes(K.raw(key));
  }

  /** A thread's messages in date order; see `conversationOrder` for equal dates. */
  async threadMessages(threadId: string): Promise<StoredMessage[]> {
    const keys = (await this.#store.keys(K.threadMessagePrefix(threadId))).map(lastPart);
    const msgs = (await this.#store.getMany<StoredMessage>(keys.map(K.message))).filter((m): m is StoredMessage => !!m);
    return conversationOrder(msgs);
  }

  /** Which of these match keys belong to tracked threads (one read for all). */
  async lookup(keys: string[]): Promise<Map<string, string>> {
    const uniq = [...new Set(keys)];
    const values = await this.#store.getMany<string>(uniq.map(K.matchKey));
    const out = new Map<string, string>();
    uniq.forEach((k, i) => {
      const v = values[i];
      if (v) out.set(k, v);
    });
    return out;
  }

  /** A key is tracked when it is ATS-originated or already in a thread. */
  async trackedKeys(keys: string[]): Promise<Set<string>> {
    const known = await this.lookup(keys);
    return new Set(keys.filter((k) => known.has(k) || this.#opts.isAtsKey(k)));
  }

  async hasMessage(key: string): Promise<boolean> {
    return this.#store.has(K.message(key));
  }

  /**
   * Records that a stored message was (also) seen at a location, without fetching it again.
   * Returns false when the message is not stored.
   */
  addSighting(key: string, loc: Location): Promise<boolean> {
    return this.#store.exclusive(async () => {
      const msg = await this.getMessage(key);
      if (!msg) return false;
      const batch = this.#store.batch().put(K.location(loc.userId, loc.folder, loc.uidValidity, loc.uid), key);
      await this.#addSeenIn(batch, msg, { userId: loc.userId, folder: loc.folder });
      await batch.write();
      return true;
    });
  }

  async #addSeenIn(batch: WriteBatch, msg: StoredMessage, seen: SeenIn): Promise<void> {
    if (msg.seenIn.some((s) => s.userId === seen.userId && s.folder === seen.folder)) return;
    msg.seenIn.push(seen);
    batch.put(K.message(msg.key), msg);
    const thread = await this.getThread(msg.threadId);
    if (thread && !thread.ownerUserIds.includes(seen.userId)) {
      thread.ownerUserIds.push(seen.userId);
      batch.put(K.thread(thread.id), thread);
    }
  }

  ingest(input: IngestInput): Promise<IngestResult> {
    return this.#store.exclusive(() => this.#ingest(input));
  }

  async #ingest(input: IngestInput): Promise<IngestResult> {
    const existing = await this.getMessage(input.key);
    if (existing) {
      const batch = this.#store.batch();
      if (input.location) batch.put(K.location(input.location.userId, input.location.folder, input.location.uidValidity, input.location.uid), input.key);
      await this.#addSeenIn(batch, existing, { userId: input.userId, folder: input.folder });
      input.alsoWrite?.(batch);
      await batch.write();
      return { status: 'duplicate', key: input.key, threadId: existing.threadId };
    }
    const known = await this.lookup(input.matchKeys);
    const tracked = known.size > 0 || input.matchKeys.some(this.#opts.isAtsKey);
    if (!tracked && !input.force) {
      if (input.alsoWrite) {
        const batch = this.#store.batch();
        input.alsoWrite(batch);
        await batch.write();
      }
      return { status: 'untracked' };
    }

    const batch = this.#store.batch();
    const threadIds = [...new Set(known.values())];
    const threads = (await this.#store.getMany<ThreadRecord>(threadIds.map(K.thread))).filter((t): t is ThreadRecord => !!t);
    threads.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    const p = input.parsed;
    let thread: ThreadRecord = threads[0] ?? {
      id: newThreadId(), subject: p.subject, origin: input.origin, candidateIds: [], ownerUserIds: [], secret: false, secretBy: null,
      participants: [], messageCount: 0, lastMessageAt: p.date, snippet: '', createdAt: new Date().toISOString(),
    };
    for (const other of threads.slice(1)) thread = await this.#merge(batch, thread, other);

    const addresses = [p.from, ...p.to, ...p.cc].filter((a): a is NonNullable<typeof a> => !!a && !!a.address);
    const normAddrs = addresses.map((a) => this.#opts.normalise(a.address));
    const fromNorm = p.from ? this.#opts.normalise(p.from.address) : null;
    const ownerUsers = fromNorm ? await this.#accounts.usersByAddresses([fromNorm]) : new Set<string>();
    const rawStored = !!input.raw && input.raw.length <= this.#opts.maxRawBytes;
    const msg: StoredMessage = {
      key: input.key, threadId: thread.id, messageId: p.ids.messageId, messageIdAlternatives: p.ids.messageIdAlternatives, aliases: p.ids.aliases,
      inReplyTo: p.ids.inReplyTo, references: p.ids.references, date: p.date, direction: ownerUsers.size > 0 ? 'outbound' : 'inbound',
      from: p.from, to: p.to, cc: p.cc, subject: p.subject, text: p.text, html: p.html, snippet: p.snippet,
      attachments: p.attachments, seenIn: [{ userId: input.userId, folder: input.folder }], autoReply: p.autoReply,
      rawStored, size: p.size, parseError: p.parseError, createdAt: new Date().toISOString(),
    };
    batch.put(K.message(msg.key), msg);
    if (rawStored && input.raw) batch.putRaw(K.raw(msg.key), input.raw);
    if (input.location) batch.put(K.location(input.location.userId, input.location.folder, input.location.uidValidity, input.location.uid), msg.key);
    batch.put(K.threadMessage(thread.id, msg.date, msg.key), '');
    for (const mk of input.matchKeys) {
      if (known.get(mk) === thread.id) continue;
      batch.put(K.matchKey(mk), thread.id);
      batch.put(K.threadMatchKey(thread.id, mk), '');
    }

    // thread summary
    const wasEmpty = thread.messageCount === 0;
    thread.messageCount += 1;
    if (wasEmpty || msg.date >= thread.lastMessageAt) {
      thread.lastMessageAt = msg.date;
      thread.snippet = msg.snippet;
    }
    if (wasEmpty && !thread.subject) thread.subject = msg.subject;
    if (!thread.ownerUserIds.includes(input.userId)) thread.ownerUserIds.push(input.userId);
    const known_ = new Set(thread.participants.map(this.#opts.normalise));
    addresses.forEach((a, i) => {
      if (!known_.has(normAddrs[i]!)) {
        known_.add(normAddrs[i]!);
        thread.participants.push(a.address.toLowerCase());
        batch.put(K.addrThread(normAddrs[i]!, thread.id), '');
      }
    });

    const candidates = new Set([...(await this.#accounts.candidatesByAddresses(normAddrs)), ...(input.candidateIds ?? [])]);
    // a message removed from a profile (stored again after a purge) links nowhere it was removed
    // from, and the event does not name those candidates
    const removedFrom = await this.#tombstones.removing(msg.key, [...candidates, ...thread.candidateIds]);
    const linked = this.#linkCandidates(thread, [...candidates].filter((c) => !removedFrom.has(c)));
    await this.#moveActivity(batch, thread);
    batch.put(K.thread(thread.id), thread);

    const event = this.#outbox.append(batch, 'message.created', {
      userId: input.userId, threadId: thread.id, candidateIds: thread.candidateIds.filter((c) => !removedFrom.has(c)), secret: thread.secret,
      message: toApiMessage(msg, { withBody: false }),
    }, thread.id);
    for (const cid of linked) this.#outbox.append(batch, 'thread.linked', { threadId: thread.id, candidateId: cid, origin: thread.origin, secret: thread.secret }, thread.id);
    const reconsider = await this.#claimPending(batch, input.matchKeys);
    if (input.quarantine) {
      const l = input.location;
      const q = quarantineRecord({
        ...input.quarantine, userId: input.userId, folder: input.folder, uidValidity: l?.uidValidity ?? null, uid: l?.uid ?? null,
        messageKey: msg.key, messageId: msg.messageId, threadId: thread.id, size: p.size,
      });
      batch.put(K.quarantine(q.userId, q.id), q);
    }
    input.alsoWrite?.(batch);
    await batch.write();
    return { status: 'stored', key: msg.key, threadId: thread.id, eventId: event.id, ownKeys: input.matchKeys, reconsider };
  }

  /** Adds candidates to a thread record; returns the newly linked ones. */
  #linkCandidates(thread: ThreadRecord, candidates: Iterable<string>): string[] {
    const added: string[] = [];
    for (const cid of candidates) {
      if (thread.candidateIds.includes(cid)) continue;
      thread.candidateIds.push(cid);
      added.push(cid);
    }
    return added;
  }

  /**
   * Keeps each candidate's "newest activity first" index in step with the thread: its newest
   * message on that candidate's profile (the thread's newest unless the candidate removed it).
   */
  async #moveActivity(batch: WriteBatch, thread: ThreadRecord): Promise<void> {
    for (const cid of thread.candidateIds) {
      const old = await this.#store.get<string>(K.candThread(cid, thread.id));
      const next = K.candActivity(cid, await this.#tombstones.activity(cid, thread, batch), thread.id);
      if (old === next) continue;
      if (old) batch.del(old);
      batch.put(next, '');
      batch.put(K.candThread(cid, thread.id), next);
    }
  }

  /** Folds `other` into `into`: messages, ids, candidates and participants move. */
  async #merge(batch: WriteBatch, into: ThreadRecord, other: ThreadRecord): Promise<ThreadRecord> {
    for (const key of await this.#store.keys(K.threadMessagePrefix(other.id))) {
      const rest = key.slice(K.threadMessagePrefix(other.id).length);
      batch.del(key).put(`${K.threadMessagePrefix(into.id)}${rest}`, '');
      const msg = await this.getMessage(lastPart(key));
      if (msg) batch.put(K.message(msg.key), { ...msg, threadId: into.id });
    }
    for (const key of await this.#store.keys(K.threadMatchKeyPrefix(other.id))) {
      const mk = unesc(lastPart(key));
      batch.del(key).put(K.threadMatchKey(into.id, mk), '').put(K.matchKey(mk), into.id);
    }
    for (const cid of other.candidateIds) {
      const old = await this.#store.get<string>(K.candThread(cid, other.id));
      if (old) batch.del(old);
      batch.del(K.candThread(cid, other.id));
      if (!into.candidateIds.includes(cid)) into.candidateIds.push(cid);
    }
    const seen = new Set(into.participants.map(this.#opts.normalise));
    for (const p of other.participants) {
      const n = this.#opts.normalise(p);
      batch.del(K.addrThread(n, other.id)).put(K.addrThread(n, into.id), '');
      if (!seen.has(n)) {
        seen.add(n);
        into.participants.push(p);
      }
    }
    for (const u of other.ownerUserIds) if (!into.ownerUserIds.includes(u)) into.ownerUserIds.push(u);
    if (other.lastMessageAt > into.lastMessageAt) {
      into.lastMessageAt = other.lastMessageAt;
      into.snippet = other.snippet;
    }
    into.messageCount += other.messageCount;
    into.secret = into.secret || other.secret;
    into.secretBy = into.secretBy ?? other.secretBy;
    batch.del(K.thread(other.id));
    return into;
  }

  /**
   * A thread declared by the ATS before any mail exists (POST /v1/outbound, the relay):
   * replies to these ids are tracked even outside the ATS domains.
   */
  declareOutbound(
    input: OutboundDeclaration,
    /** More records written in the same batch (the relay's queue entry), so both exist or neither. */
    alsoWrite?: (batch: WriteBatch, thread: ThreadRecord) => void,
  ): Promise<ThreadRecord> {
    return this.#store.exclusive(async () => {
      const batch = this.#store.batch();
      const thread = await this.declareOutboundInBatch(batch, input);
      alsoWrite?.(batch, thread);
      await batch.write();
      return thread;
    });
  }

  /**
   * `declareOutbound` into a batch the caller writes, inside `store.exclusive`. Declarations in
   * one batch must not share match keys or threads: each reads the store, not the batch.
   */
  async declareOutboundInBatch(batch: WriteBatch, input: OutboundDeclaration): Promise<ThreadRecord> {
    const known = await this.lookup(input.matchKeys);
    const existing = (await this.#store.getMany<ThreadRecord>([...new Set(known.values())].map(K.thread))).filter((t): t is ThreadRecord => !!t);
    existing.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    const now = new Date().toISOString();
    let thread: ThreadRecord = existing[0] ?? {
      id: newThreadId(), subject: input.subject ?? '', origin: 'ats', candidateIds: [], ownerUserIds: [], secret: false, secretBy: null,
      participants: [], messageCount: 0, lastMessageAt: now, snippet: '', createdAt: now,
    };
    for (const other of existing.slice(1)) thread = await this.#merge(batch, thread, other);
    if (!thread.ownerUserIds.includes(input.userId)) thread.ownerUserIds.push(input.userId);
    for (const mk of input.matchKeys) {
      if (known.get(mk) === thread.id) continue;
      batch.put(K.matchKey(mk), thread.id).put(K.threadMatchKey(thread.id, mk), '');
    }
    // declaring mail a candidate removed does not bring it back to their profile
    const candidateIds: string[] = [];
    for (const cid of input.candidateIds) if (!(await this.#tombstones.declarationRemoved(cid, thread.id, input.matchKeys, batch))) candidateIds.push(cid);
    const linked = this.#linkCandidates(thread, candidateIds);
    await this.#moveActivity(batch, thread);
    batch.put(K.thread(thread.id), thread);
    for (const cid of linked) this.#outbox.append(batch, 'thread.linked', { threadId: thread.id, candidateId: cid, origin: thread.origin, secret: thread.secret }, thread.id);
    return thread;
  }

  /**
   * Whether a message may be linked to a candidate: the one place imports and links ask, so a
   * message removed from a candidate's profile (DELETE /v1/candidates/{id}/messages/{key}) is
   * not brought back.
   */
  async mayLink(candidateId: string, messageKey: string): Promise<boolean> {
    return !(await this.#tombstones.has(candidateId, messageKey));
  }

  /** Links a thread to a candidate (with its thread.linked event); false when it already was. */
  linkThread(threadId: string, candidateId: string): Promise<boolean> {
    return this.#store.exclusive(async () => {
      const thread = await this.getThread(threadId);
      if (!thread || thread.candidateIds.includes(candidateId)) return false;
      const batch = this.#store.batch();
      this.#linkCandidates(thread, [candidateId]);
      await this.#moveActivity(batch, thread);
      batch.put(K.thread(thread.id), thread);
      this.#outbox.append(batch, 'thread.linked', { threadId: thread.id, candidateId, origin: thread.origin, secret: thread.secret }, thread.id);
      await batch.write();
      return true;
    });
  }

  /** Links existing threads that mention newly registered candidate addresses. */
  linkCandidateByAddresses(batch: WriteBatch, cid: string, normAddrs: string[]): Promise<string[]> {
    return (async () => {
      const threadIds = new Set<string>();
      for (const a of normAddrs) for (const key of await this.#store.keys(K.addrThreadPrefix(a))) threadIds.add(lastPart(key));
      const linked: string[] = [];
      for (const id of threadIds) {
        const thread = await this.getThread(id);
        if (!thread || thread.candidateIds.includes(cid)) continue;
        // every message of it was removed from this candidate's profile: it stays off
        if (await this.#tombstones.removedWhole(cid, thread, batch)) continue;
        this.#linkCandidates(thread, [cid]);
        await this.#moveActivity(batch, thread);
        batch.put(K.thread(thread.id), thread);
        this.#outbox.append(batch, 'thread.linked', { threadId: thread.id, candidateId: cid, origin: thread.origin, secret: thread.secret }, thread.id);
        linked.push(thread.id);
      }
      return linked;
    })();
  }

  /** A candidate's threads, newest activity first, from a cursor. */
  async candidateThreadPage(cid: string, after: string | undefined, limit: number): Promise<Array<{ cursor: string; thread: ThreadRecord }>> {
    const prefix = K.candActivityPrefix(cid);
    const keys = await this.#store.keys(prefix, { after: after ? prefix + after : undefined, limit });
    const threads = await this.#store.getMany<ThreadRecord>(keys.map((k) => K.thread(lastPart(k))));
    const out: Array<{ cursor: string; thread: ThreadRecord }> = [];
    keys.forEach((k, i) => {
      const t = threads[i];
      if (t) out.push({ cursor: k.slice(prefix.length), thread: t });
    });
    return out;
  }

  // ---- pending references (untracked mail that may join a thread later) ----

  /** Remembers, under keyed hashes, which ids an untracked message pointed at. */
  async rememberPending(keys: string[], loc: Location, ttlMs: number): Promise<void> {
    await this.rememberPendingMany([{ keys, loc }], ttlMs);
  }

  /** `rememberPending` for several messages in one write (a chunk of a folder). */
  async rememberPendingMany(entries: Array<{ keys: string[]; loc: Location }>, ttlMs: number): Promise<void> {
    const batch = this.#store.batch();
    const expiresAt = Date.now() + ttlMs;
    for (const { keys, loc } of entries) {
      const value: PendingRef = { uidValidity: loc.uidValidity, expiresAt };
      for (const k of new Set(keys)) batch.put(K.pending(this.#store.idHasher.hash(k), loc.userId, loc.folder, loc.uid), value);
    }
    await batch.write();
  }

  /**
   * Untracked messages that pointed at any of these keys move, in the batch that stores the
   * message they pointed at, from the pending index to the durable "look again" queue: a
   * crash between storing a parent and re-reading its late children loses nothing.
   */
  async #claimPending(batch: WriteBatch, keys: string[]): Promise<Location[]> {
    const out: Location[] = [];
    const prefixes = [...new Set(keys)].map((k) => K.pendingPrefix(this.#store.idHasher.hash(k)));
    // all scans at once: each is a round trip through the thread pool, and this runs under the
    // store lock on the way of every new message to its webhook
    const found = await Promise.all(prefixes.map((prefix) => this.#store.entries<PendingRef>(prefix)));
    for (const [i, prefix] of prefixes.entries()) {
      for (const [key, ref] of found[i]!) {
        const [userId, folder, uid] = key.slice(prefix.length).split('!');
        batch.del(key);
        if (ref.expiresAt < Date.now()) continue;
        const loc: Location = { userId: userId!, folder: unesc(folder!), uidValidity: ref.uidValidity, uid: Number(uid) };
        batch.put(K.reconsider(loc.userId, loc.folder, loc.uidValidity, loc.uid), '');
        out.push(loc);
      }
    }
    return out;
  }

  /** A mailbox's "look again" queue (after a restart: what was claimed but not yet re-read). */
  async reconsiderQueue(userId: string): Promise<Location[]> {
    const prefix = K.reconsiderUserPrefix(userId);
    return (await this.#store.keys(prefix)).map((key) => {
      const [folder, uidValidity, uid] = key.slice(prefix.length).split('!');
      return { userId, folder: unesc(folder!), uidValidity: uidValidity!, uid: Number(uid) };
    });
  }

  /** Removes locations from the "look again" queue once they were re-read. */
  async finishReconsider(locations: Location[]): Promise<void> {
    const batch = this.#store.batch();
    for (const l of locations) batch.del(K.reconsider(l.userId, l.folder, l.uidValidity, l.uid));
    await batch.write();
  }

  /** Deletes expired pending entries; returns how many. */
  async sweepPending(now = Date.now()): Promise<number> {
    const batch = this.#store.batch();
    for (const [key, ref] of await this.#store.entries<PendingRef>(K.pendingAll())) if (ref.expiresAt < now) batch.del(key);
    const n = batch.size;
    await batch.write();
    return n;
  }

  /** Makes a thread secret (`by` = the user who did) or visible again (`null`). */
  /** `alsoWrite` adds to the same batch (the audit record). */
  setSecret(threadId: string, by: string | null, alsoWrite?: (batch: WriteBatch) => void): Promise<ThreadRecord> {
    return this.#store.exclusive(async () => {
      const t = await this.getThread(threadId);
      if (!t) throw new Error(`no thread ${threadId}`);
      t.secret = by !== null;
      t.secretBy = by;
      const batch = this.#store.batch().put(K.thread(t.id), t);
      alsoWrite?.(batch);
      await batch.write();
      return t;
    });
  }

  /** Keys of the messages stored from a user's mailbox. */
  async messageKeysOfUser(userId: string): Promise<string[]> {
    return [...new Set((await this.#store.entries<string>(K.locationUserPrefix(userId))).map(([, key]) => key))];
  }

  /** Revocation with purge: messages seen only in this user's mailbox are deleted. */
  purgeUserMessages(userId: string, keys: string[]): Promise<number> {
    return this.#store.exclusive(async () => {
      const batch = this.#store.batch();
      const threads = new Map<string, ThreadRecord>();
      const removed = new Set<string>();
      let n = 0;
      for (const key of keys) {
        const msg = await this.getMessage(key);
        if (!msg) continue;
        const rest = msg.seenIn.filter((s) => s.userId !== userId);
        if (rest.length) {
          batch.put(K.message(key), { ...msg, seenIn: rest });
          continue;
        }
        const thread = threads.get(msg.threadId) ?? (await this.getThread(msg.threadId));
        if (!thread) continue;
        threads.set(thread.id, thread);
        batch.del(K.message(key)).del(K.raw(key)).del(K.threadMessage(thread.id, msg.date, key));
        removed.add(key);
        thread.messageCount = Math.max(0, thread.messageCount - 1);
        n++;
      }
      for (const thread of threads.values()) {
        thread.ownerUserIds = thread.ownerUserIds.filter((u) => u !== userId);
        if (thread.messageCount === 0) await this.#deleteThread(batch, thread);
        else {
          const remaining = (await this.#store.keys(K.threadMessagePrefix(thread.id))).filter((k) => !removed.has(lastPart(k)));
          const latest = remaining[remaining.length - 1];
          const latestMsg = latest ? await this.getMessage(lastPart(latest)) : undefined;
          if (latestMsg) {
            thread.lastMessageAt = latestMsg.date;
            thread.snippet = latestMsg.snippet;
          }
          await this.#moveActivity(batch, thread);
          batch.put(K.thread(thread.id), thread);
        }
      }
      await batch.write();
      return n;
    });
  }

  /** Removes a thread record and every index that points at it. */
  async #deleteThread(batch: WriteBatch, thread: ThreadRecord): Promise<void> {
    for (const key of await this.#store.keys(K.threadMatchKeyPrefix(thread.id))) {
      batch.del(key).del(K.matchKey(unesc(lastPart(key))));
    }
    for (const key of await this.#store.keys(K.threadMessagePrefix(thread.id))) batch.del(key);
    for (const p of thread.participants) batch.del(K.addrThread(this.#opts.normalise(p), thread.id));
    for (const cid of thread.candidateIds) {
      const act = await this.#store.get<string>(K.candThread(cid, thread.id));
      if (act) batch.del(act);
      batch.del(K.candThread(cid, thread.id));
    }
    batch.del(K.thread(thread.id));
  }

  /**
   * Counts for a mailbox status: threads and messages this user's mailbox holds; with
   * `include`, only those of the threads it accepts (what the asking person may see).
   */
  async countsForUser(userId: string, include?: (thread: ThreadRecord) => boolean): Promise<{ threads: number; messages: number }> {
    const keys = new Set<string>();
    for (const [, key] of await this.#store.entries<string>(K.locationUserPrefix(userId))) keys.add(key);
    const msgs = await this.#store.getMany<StoredMessage>([...keys].map(K.message));
    const perThread = new Map<string, number>();
    let unthreaded = 0;
    for (const m of msgs) {
      if (m) perThread.set(m.threadId, (perThread.get(m.threadId) ?? 0) + 1);
      else unthreaded++;
    }
    if (!include) return { threads: perThread.size, messages: keys.size };
    const ids = [...perThread.keys()];
    const threads = await this.#store.getMany<ThreadRecord>(ids.map(K.thread));
    let threadCount = 0;
    let messages = unthreaded;
    ids.forEach((id, i) => {
      const thread = threads[i];
      if (thread && !include(thread)) return;
      threadCount++;
      messages += perThread.get(id)!;
    });
    return { threads: threadCount, messages };
  }
}
