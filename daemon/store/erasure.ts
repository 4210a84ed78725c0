import { K, lastPart, unesc } from './keys.js';
import type { Store, WriteBatch } from './store.js';
import type { Outbox } from './outbox.js';
import type { Accounts } from './accounts.js';
import type { Audit, AuditActor } from './audit.js';
import type { QuarantineRecord } from './quarantine.js';
import type { CandidateRecord, EventRecord, ImportRecord, RelayEntry, StoredMessage, ThreadRecord } from './records.js';

/**
 * A data-protection erasure of a candidate (DELETE /v1/candidates/{id}). In one batch:
 *
 * - the candidate record and its address index are deleted;
 * - threads that belong to no other candidate are deleted with everything about them: their
 *   messages, original bytes (attachments are inside them), match keys, participant index,
 *   pending references to their ids, the places their messages sat in mailboxes, quarantine
 *   entries and queued relay messages. Such a thread is one linked to the candidate, or one
 *   that has one of the candidate's addresses among its participants (an email removed from
 *   the profile is still a conversation with this person);
 * - threads shared with another candidate stay, with their messages exactly as they are (they
 *   are the other candidate's record too, and the original bytes cannot be edited without
 *   corrupting them): the candidate is unlinked, and their addresses leave the thread's
 *   participant list and the participant index. An address that is also an ATS user's is never
 *   dropped from a thread and never makes a thread this candidate's;
 * - the candidate's imports and the record of emails removed from their profile are deleted;
 * - stored events about the erased content keep their id, type, time and delivery state, so
 *   change-feed cursors and receivers' de-duplication stay valid, and their data becomes
 *   `{"erased": true}`: message.created events of deleted threads, thread.linked events of the
 *   candidate, relay outcomes of deleted threads, import.finished events of the candidate.
 *   message.created events of shared threads only lose the candidate's id;
 * - a `candidate.erased` event and an audit record (ids and counts, never an address).
 *
 * Then LevelDB's files are rewritten without the deleted values (`Store.purgeDeleted`), so
 * nothing of what was erased is left on disk either. The erasure is irreversible: mail that
 * arrives later from the same address in an ATS thread is kept as for an unknown person.
 */

/** The data of an event about erased content. */
export const ERASED_DATA: Readonly<Record<string, unknown>> = Object.freeze({ erased: true });

export interface ErasureDeps {
  store: Store;
  outbox: Outbox;
  accounts: Accounts;
  audit: Audit;
  normalise: (address: string) => string;
  /** Stops imports and links for the candidate, waiting for those running, until released. */
  holdImports?: (candidateId: string) => Promise<() => void>;
  /** Keeps relay messages of these threads from being sent, waiting for sends in flight, until released. */
  holdRelay?: (threadIds: ReadonlySet<string>) => Promise<() => Promise<void> | void>;
}

export interface ErasureOutcome {
  candidateId: string;
  /** Whether a candidate record was stored (threads may name a candidate the ATS never registered). */
  registered: boolean;
  threadsDeleted: number;
  threadsUnlinked: number;
  messagesDeleted: number;
  eventsRewritten: number;
  /** Id of the `candidate.erased` event. */
  eventId: string;
}

interface Plan {
  candidate: CandidateRecord | undefined;
  /** The candidate's addresses, normalised. */
  addresses: string[];
  /** Those that are no ATS user's: threads are found by them, and drop them from their participants. */
  forget: Set<string>;
  /** Deleted: threads of no other candidate. */
  own: Map<string, ThreadRecord>;
  /** Unlinked: threads of other candidates too. */
  shared: Map<string, ThreadRecord>;
  /** The messages of the deleted threads. */
  messages: Map<string, StoredMessage>;
}

type Decide = (event: EventRecord) => Record<string, unknown> | null;

/** Tries before an erasure takes the store lock with threads that changed since it looked. */
const ATTEMPTS = 3;

export class CandidateErasure {
  readonly #d: ErasureDeps;
  /** Erasures one after the other: each reads what the one before left. */
  #chain: Promise<unknown> = Promise.resolve();
  #purging: Promise<void> | null = null;
  #nextPurge: Promise<void> | null = null;
  #stopped = false;

  constructor(deps: ErasureDeps) {
    this.#d = deps;
  }

  /** Finishes the file rewrite of an erasure that a stop or a crash interrupted. */
  async start(): Promise<boolean> {
    this.#stopped = false;
    if (!(await this.#d.store.has(K.purgeOwed()))) return false;
    await this.purge();
    return true;
  }

  /** No purge starts after this; one owed is finished on the next start. */
  stop(): void {
    this.#stopped = true;
  }

  /**
   * Erases the candidate (see the module comment) and resolves once nothing of it is left in
   * the store's files. Erasing a candidate of whom nothing is stored still rewrites the files,
   * so a request repeated after a failure finishes the job.
   */
  async erase(candidateId: string, actor: AuditActor): Promise<ErasureOutcome> {
    const run = this.#chain.then(() => this.#erase(candidateId, actor));
    this.#chain = run.catch(() => undefined);
    const outcome = await run;
    await this.purge();
    return outcome;
  }

  /**
   * Rewrites LevelDB's files without what erasures deleted. Erasures committed while one
   * rewrite runs share the next one.
   */
  purge(): Promise<void> {
    if (!this.#purging) {
      this.#purging = (async () => {
        if (this.#stopped) return;
        await this.#d.store.purgeDeleted();
        if (this.#stopped) return;
        await this.#d.store.batch().del(K.purgeOwed()).write();
      })().finally(() => {
        this.#purging = null;
      });
      return this.#purging;
    }
    this.#nextPurge ??= this.#purging.catch(() => undefined).then(() => {
      this.#nextPurge = null;
      return this.purge();
    });
    return this.#nextPurge;
  }

  async #erase(cid: string, actor: AuditActor): Promise<ErasureOutcome> {
    const releaseImports = (await this.#d.holdImports?.(cid)) ?? (() => {});
    try {
      for (let attempt = 1; ; attempt++) {
        // the event log is read outside the lock (it can be long) for the threads as they are
        // now; under the lock only what changed meanwhile is read again
        const pre = await this.#plan(cid);
        const preOwn = new Set(pre.own.keys());
        const preKeys = new Set(pre.messages.keys());
        const scanned = await this.#scanEvents(0, decider(cid, preOwn, preKeys));
        const releaseRelay = (await this.#d.holdRelay?.(preOwn)) ?? (() => {});
        try {
          const outcome = await this.#d.store.exclusive(async () => {
            const plan = await this.#plan(cid);
            const own = new Set(plan.own.keys());
            const keys = new Set(plan.messages.keys());
            const grew = [...own].some((id) => !preOwn.has(id)) || [...keys].some((k) => !preKeys.has(k));
            // a thread became the candidate's meanwhile: hold its relay messages too, look again
            if (grew && attempt < ATTEMPTS) return null;
            const decide = decider(cid, own, keys);
            let rewrites: Map<number, Record<string, unknown>>;
            if (grew) rewrites = (await this.#scanEvents(0, decide)).rewrites;
            else {
              rewrites = new Map();
              for (const e of await this.#d.outbox.getMany([...scanned.rewrites.keys()])) {
                const data = e && decide(e);
                if (data) rewrites.set(e.seq, data);
              }
              for (const [seq, data] of (await this.#scanEvents(scanned.last, decide)).rewrites) rewrites.set(seq, data);
            }
            return this.#commit(cid, actor, plan, rewrites);
          });
          if (outcome) return outcome;
        } finally {
          await releaseRelay();
        }
      }
    } finally {
      releaseImports();
    }
  }

  async #plan(cid: string): Promise<Plan> {
    const { store, accounts } = this.#d;
    const candidate = await accounts.getCandidate(cid);
    const addresses = candidate ? accounts.candidateAddresses(candidate) : [];
    const forget = new Set<string>();
    for (const a of addresses) if ((await accounts.usersByAddresses([a])).size === 0) forget.add(a);
    const ids = new Set<string>();
    for (const key of await store.keys(K.candThreadPrefix(cid))) ids.add(lastPart(key));
    for (const a of forget) for (const key of await store.keys(K.addrThreadPrefix(a))) ids.add(lastPart(key));
    const own = new Map<string, ThreadRecord>();
    const shared = new Map<string, ThreadRecord>();
    for (const t of await store.getMany<ThreadRecord>([...ids].map(K.thread))) {
      if (!t) continue;
      (t.candidateIds.some((c) => c !== cid) ? shared : own).set(t.id, t);
    }
    const messages = new Map<string, StoredMessage>();
    for (const id of own.keys()) {
      const keys = (await store.keys(K.threadMessagePrefix(id))).map(lastPart);
      for (const m of await store.getMany<StoredMessage>(keys.map(K.message))) if (m) messages.set(m.key, m);
    }
    return { candidate, addresses, forget, own, shared, messages };
  }

  /** Events after `afterSeq` whose data must change, with their new data. */
  async #scanEvents(afterSeq: number, decide: Decide): Promise<{ rewrites: Map<number, Record<string, unknown>>; last: number }> {
    const rewrites = new Map<number, Record<string, unknown>>();
    let last = afterSeq;
    let after = afterSeq > 0 ? K.event(afterSeq) : undefined;
    for (;;) {
      const page = await this.#d.store.entries<EventRecord>(K.eventPrefix(), { after, limit: 500 });
      if (page.length === 0) break;
      for (const [, e] of page) {
        const data = decide(e);
        if (data) rewrites.set(e.seq, data);
        last = e.seq;
      }
      after = page[page.length - 1]![0];
    }
    return { rewrites, last };
  }

  async #commit(cid: string, actor: AuditActor, plan: Plan, rewrites: Map<number, Record<string, unknown>>): Promise<ErasureOutcome> {
    const { store, outbox, audit } = this.#d;
    const batch = store.batch();
    for (const t of plan.own.values()) await this.#deleteThread(batch, t);
    for (const key of plan.messages.keys()) batch.del(K.message(key)).del(K.raw(key));
    await this.#deleteLocations(batch, plan.messages);
    const own = new Set(plan.own.keys());
    for (const [key, q] of await store.entries<QuarantineRecord>(K.quarantinePrefix())) {
      if ((q.threadId && own.has(q.threadId)) || plan.messages.has(q.messageKey)) batch.del(key);
    }
    for (const [key, e] of await store.entries<RelayEntry>(K.relayPrefix())) {
      if (own.has(e.threadId)) batch.del(key).del(K.relayRaw(e.queueId));
    }
    for (const t of plan.shared.values()) await this.#unlink(batch, t, cid, plan.forget);

    batch.del(K.candidate(cid));
    for (const a of plan.addresses) batch.del(K.candAddr(a, cid));
    for (const key of await store.keys(K.candThreadPrefix(cid))) batch.del(key);
    for (const key of await store.keys(K.candActivityPrefix(cid))) batch.del(key);
    // emails removed from the profile: the removals go with the candidate
    for (const key of await store.keys(K.tombPrefix(cid))) batch.del(key);
    batch.del(K.tombCandidate(cid));
    for (const [key, job] of await store.entries<ImportRecord>(K.importJobPrefix())) if (job.candidateId === cid) batch.del(key);

    const outcome = {
      candidateId: cid, registered: !!plan.candidate, threadsDeleted: plan.own.size, threadsUnlinked: plan.shared.size,
      messagesDeleted: plan.messages.size, eventsRewritten: rewrites.size,
    };
    const event = outbox.append(batch, 'candidate.erased', { candidateId: cid }, `cand:${cid}`);
    audit.record(batch, {
      action: 'candidate.erased', actor, target: { candidateId: cid },
      details: { registered: outcome.registered, threadsDeleted: outcome.threadsDeleted, threadsUnlinked: outcome.threadsUnlinked, messagesDeleted: outcome.messagesDeleted, eventsRewritten: outcome.eventsRewritten },
    });
    // until the files are rewritten; a crash before then finishes it on the next start
    batch.put(K.purgeOwed(), { since: new Date().toISOString() });

    // Copies of these events read before (the webhook dispatcher's) take the new data from now
    // on. Then the values about to be deleted go out to a table file of their own: a deletion
    // written out together with the value it deletes could stay beside it on disk for good
    // (see Store.purgeDeleted).
    outbox.stageRewrites(rewrites);
    await store.flushMemtable();
    await outbox.writeRewrites(batch, rewrites.keys());
    await this.#d.accounts.forgetCandidateAddresses(plan.addresses);
    return { ...outcome, eventId: event.id };
  }

  /** Deletes a thread record and every index that points at it (its messages go separately). */
  async #deleteThread(batch: WriteBatch, t: ThreadRecord): Promise<void> {
    const { store, normalise } = this.#d;
    for (const key of await store.keys(K.threadMatchKeyPrefix(t.id))) {
      const mk = unesc(lastPart(key));
      batch.del(key);
      if ((await store.get<string>(K.matchKey(mk))) === t.id) batch.del(K.matchKey(mk));
      // untracked mail that referenced this id, remembered in case the thread was stored later
      for (const pending of await store.keys(K.pendingPrefix(store.idHasher.hash(mk)))) batch.del(pending);
    }
    for (const key of await store.keys(K.threadMessagePrefix(t.id))) batch.del(key);
    for (const p of t.participants) batch.del(K.addrThread(normalise(p), t.id));
    for (const c of t.candidateIds) {
      const activity = await store.get<string>(K.candThread(c, t.id));
      if (activity) batch.del(activity);
      batch.del(K.candThread(c, t.id));
    }
    batch.del(K.thread(t.id));
  }

  /** Where the deleted messages sat in mailboxes (the sync remembers UIDs it stored). */
  async #deleteLocations(batch: WriteBatch, messages: Map<string, StoredMessage>): Promise<void> {
    const folders = new Map<string, { userId: string; folder: string }>();
    for (const m of messages.values()) for (const s of m.seenIn) folders.set(`${s.userId}\n${s.folder}`, s);
    for (const { userId, folder } of folders.values()) {
      for (const [key, messageKey] of await this.#d.store.entries<string>(K.locationFolderPrefix(userId, folder))) {
        if (messages.has(messageKey)) batch.del(key);
      }
    }
  }

  /** A thread of other candidates too: the candidate and their addresses leave it, the messages stay. */
  async #unlink(batch: WriteBatch, t: ThreadRecord, cid: string, forget: Set<string>): Promise<void> {
    const { store, normalise } = this.#d;
    const activity = await store.get<string>(K.candThread(cid, t.id));
    if (activity) batch.del(activity);
    batch.del(K.candThread(cid, t.id));
    for (const a of forget) batch.del(K.addrThread(a, t.id));
    batch.put(K.thread(t.id), {
      ...t,
      candidateIds: t.candidateIds.filter((c) => c !== cid),
      participants: t.participants.filter((p) => !forget.has(normalise(p))),
    });
  }
}

/**
 * What an event's data becomes: `ERASED_DATA` when it is about erased content, the data
 * without the candidate's id for a message of a shared thread, null when it stays as it is.
 */
export function decider(cid: string, ownThreads: ReadonlySet<string>, messageKeys: ReadonlySet<string>): Decide {
  const own = (id: unknown) => typeof id === 'string' && ownThreads.has(id);
  return (e) => {
    const d = e.data;
    if (d.erased === true) return null;
    switch (e.type) {
      case 'message.created': {
        const key = (d.message as { id?: unknown } | undefined)?.id;
        // a thread merged into a deleted one left events under its old id: the message key finds them
        if (own(d.threadId) || own(e.orderKey) || (typeof key === 'string' && messageKeys.has(key))) return ERASED_DATA;
        const ids = d.candidateIds;
        if (Array.isArray(ids) && ids.includes(cid)) return { ...d, candidateIds: ids.filter((c) => c !== cid) };
        return null;
      }
      case 'thread.linked':
        return d.candidateId === cid || own(d.threadId) ? ERASED_DATA : null;
      case 'message.sent':
      case 'message.failed':
        return own(d.threadId) || own(e.orderKey) ? ERASED_DATA : null;
      case 'import.finished':
        return d.candidateId === cid ? ERASED_DATA : null;
      default:
        return null;
    }
  };
}
