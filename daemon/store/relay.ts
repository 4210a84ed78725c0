import crypto from 'node:crypto';
import { K, lastPart } from './keys.js';
import type { Store } from './store.js';
import type { Outbox } from './outbox.js';
import type { Threads } from './threads.js';
import type { EventType, RelayEntry, ThreadRecord } from './records.js';

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

export interface AcceptInput {
  entry: Omit<RelayEntry, 'threadId'>;
  raw: Buffer;
  /** The thread to record (or join) for the message's ids. */
  thread: { matchKeys: string[]; candidateIds: string[]; subject: string };
  durable: boolean;
}

export class RelayRecords {
  readonly #store: Store;
  readonly #outbox: Outbox;
  readonly #threads: Threads;

  constructor(store: Store, outbox: Outbox, threads: Threads) {
    this.#store = store;
    this.#outbox = outbox;
    this.#threads = threads;
  }

  /** Records the thread and the queue entry together; returns the entry as stored. */
  async accept(input: AcceptInput): Promise<RelayEntry> {
    let stored: RelayEntry | null = null;
    const t = input.thread;
    await this.#threads.declareOutbound({ userId: input.entry.userId, matchKeys: t.matchKeys, candidateIds: t.candidateIds, subject: t.subject }, (batch, thread: ThreadRecord) => {
      stored = { ...input.entry, threadId: thread.id };
      batch.put(K.relay(stored.queueId), stored).putRaw(K.relayRaw(stored.queueId), input.raw);
      batch.durable = input.durable;
    });
    return stored!;
  }

  /** Every queued entry, oldest first. */
  async list(): Promise<RelayEntry[]> {
    return (await this.#store.entries<RelayEntry>(K.relayPrefix())).map(([, e]) => e);
  }

  async count(): Promise<number> {
    return (await this.#store.keys(K.relayPrefix())).length;
  }

  get(queueId: string): Promise<RelayEntry | undefined> {
    return this.#store.get<RelayEntry>(K.relay(queueId));
  }

  raw(queueId: string): Promise<Buffer | undefined> {
    return this.#store.getBytes(K.relayRaw(queueId));
  }

  async update(entry: RelayEntry): Promise<void> {
    await this.#store.batch().put(K.relay(entry.queueId), entry).write();
  }

  /** Removes a finished entry and records its outcome event, in one batch. */
  finish(entry: RelayEntry, type: Extract<EventType, 'message.sent' | 'message.failed'>, data: Record<string, unknown>): Promise<void> {
    return this.#store.exclusive(async () => {
      const batch = this.#store.batch().del(K.relay(entry.queueId)).del(K.relayRaw(entry.queueId));
      this.#outbox.append(batch, type, data, entry.threadId);
      await batch.write();
    });
  }

  /** Queue ids in the store (for tests and the status page). */
  async ids(): Promise<string[]> {
    return (await this.#store.keys(K.relayPrefix())).map(lastPart);
  }
}
