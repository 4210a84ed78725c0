import crypto from 'node:crypto';
import { K } from './keys.js';
import type { Store, WriteBatch } from './store.js';
import type { Outbox } from './outbox.js';
import type { Threads } from './threads.js';
import type { EventType, RelayEntry } from './records.js';

/**
 * The relay's durable queue: a message accepted on the submission listener is written with
 * its thread in one batch before the ATS hears `250`, and leaves the store in the same batch
 * as its `message.sent` / `message.failed` event. A crash therefore never loses an accepted
 * message, and never leaves a finished one queued.
 */

/** Sortable by acceptance time, so a restart resumes in the order messages came in. */
export function newQueueId(): string {
  return `q_${Date.now().toString(36).padStart(9, '0')}${crypto.randomBytes(5).toString('hex')}`;
}

export type OutcomeType = Extract<EventType, 'message.sent' | 'message.failed'>;

export interface AcceptInput {
  entry: Omit<RelayEntry, 'threadId'>;
  raw: Buffer;
  /** The thread to record (or join) for the message's ids. */
  thread: { matchKeys: string[]; candidateIds: string[]; subject: string };
  durable: boolean;
}

interface Waiting<I, R> {
  item: I;
  resolve: (r: R) => void;
  reject: (err: unknown) => void;
}

/**
 * Runs submitted items in groups: while one group is being written, newcomers wait and then go
 * together. Under load many messages share one hold of the store lock and one batch, instead
 * of queueing for the lock one by one.
 */
class Grouped<I, R> {
  readonly #pending: Array<Waiting<I, R>> = [];
  #running = false;
  /** Handles a group from the head of `items`; returns one result per handled item (a prefix). */
  readonly #run: (items: I[]) => Promise<R[]>;

  constructor(run: (items: I[]) => Promise<R[]>) {
    this.#run = run;
  }

  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      if (!this.#running) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#running = true;
    while (this.#pending.length) {
      const waiting = this.#pending.splice(0);
      try {
        const results = await this.#run(waiting.map((w) => w.item));
        results.forEach((r, i) => waiting[i]!.resolve(r));
        // what the group could not take goes first next time
        this.#pending.unshift(...waiting.slice(results.length));
      } catch (err) {
        for (const w of waiting) w.reject(err);
      }
    }
    this.#running = false;
  }
}

interface FinishItem {
  entry: RelayEntry;
  type: OutcomeType;
  data: Record<string, unknown>;
}

export class RelayRecords {
  readonly #store: Store;
  readonly #outbox: Outbox;
  readonly #threads: Threads;
  readonly #accepts = new Grouped<AcceptInput, RelayEntry>((items) => this.#acceptGroup(items));
  readonly #finishes = new Grouped<FinishItem, void>((items) => this.#finishGroup(items));
  readonly #updates = new Grouped<RelayEntry, void>(async (entries) => {
    const batch = this.#store.batch();
    for (const e of entries) batch.put(K.relay(e.queueId), e);
    await batch.write();
    return entries.map(() => undefined);
  });

  constructor(store: Store, outbox: Outbox, threads: Threads) {
    this.#store = store;
    this.#outbox = outbox;
    this.#threads = threads;
  }

  /** Records the thread and the queue entry together (durably when asked); returns the entry as stored. */
  async accept(input: AcceptInput): Promise<RelayEntry> {
    const entry = await this.#accepts.submit(input);
    // outside the store lock, so accepts arriving together share one fsync
    if (input.durable) await this.#store.flush();
    return entry;
  }

  /**
   * One batch for as many accepts as can share it: new threads of their own (fresh stamped
   * ids). A message that joins an existing thread, or shares an id with one before it, is
   * declared alone, since each declaration reads the store and not the batch.
   */
  #acceptGroup(items: AcceptInput[]): Promise<RelayEntry[]> {
    return this.#store.exclusive(async () => {
      const batch = this.#store.batch();
      const out: RelayEntry[] = [];
      const used = new Set<string>();
      for (const input of items) {
        const keys = input.thread.matchKeys;
        const joins = (await this.#threads.lookup(keys)).size > 0;
        if (out.length && (joins || keys.some((k) => used.has(k)))) break;
        const t = input.thread;
        const thread = await this.#threads.declareOutboundInBatch(batch, { userId: input.entry.userId, matchKeys: keys, candidateIds: t.candidateIds, subject: t.subject });
        const entry: RelayEntry = { ...input.entry, threadId: thread.id };
        batch.put(K.relay(entry.queueId), entry).putRaw(K.relayRaw(entry.queueId), input.raw);
        out.push(entry);
        for (const k of keys) used.add(k);
        if (joins) break;
      }
      await batch.write();
      return out;
    });
  }

  /** Every queued entry, oldest first. */
  async list(): Promise<RelayEntry[]> {
    return (await this.#store.entries<RelayEntry>(K.relayPrefix())).map(([, e]) => e);
  }

  async count(): Promise<number> {
    return (await this.#store.keys(K.relayPrefix())).length;
  }

  raw(queueId: string): Promise<Buffer | undefined> {
    return this.#store.getBytes(K.relayRaw(queueId));
  }

  /** Rewrites a queue entry (attempt marks, retry times); updates made together share one batch. */
  update(entry: RelayEntry): Promise<void> {
    return this.#updates.submit({ ...entry });
  }

  /**
   * Adds to a batch what finishes an entry: it leaves the queue and its outcome event is
   * recorded. Call inside `store.exclusive` (event order), e.g. from the batch that stores the
   * sent message in its thread.
   */
  finishInBatch(batch: WriteBatch, entry: RelayEntry, type: OutcomeType, data: Record<string, unknown>): void {
    batch.del(K.relay(entry.queueId)).del(K.relayRaw(entry.queueId));
    this.#outbox.append(batch, type, data, entry.threadId);
  }

  /** Finishes an entry (grouped with others finishing at the same time). */
  finish(entry: RelayEntry, type: OutcomeType, data: Record<string, unknown>): Promise<void> {
    return this.#finishes.submit({ entry, type, data });
  }

  #finishGroup(items: FinishItem[]): Promise<void[]> {
    return this.#store.exclusive(async () => {
      const batch = this.#store.batch();
      for (const { entry, type, data } of items) this.finishInBatch(batch, entry, type, data);
      await batch.write();
      return items.map(() => undefined);
    });
  }
}
