import crypto from 'node:crypto';
import { K, lastPart } from './keys.js';
import type { Store, WriteBatch } from './store.js';
import type { EventRecord, EventType } from './records.js';

/**
 * The durable outbox: events are written in the same batch as the data they describe, so a
 * crash never leaves one without the other. It is also the change feed (GET /v1/events).
 */
export class Outbox {
  readonly #store: Store;
  #nextSeq = 1;
  #instance = '';
  readonly #listeners = new Set<(events: readonly EventRecord[]) => void>();
  /** Events appended to each batch not written yet, handed to the listeners once it is. */
  readonly #unwritten = new WeakMap<WriteBatch, EventRecord[]>();
  readonly #push: boolean;
  /**
   * Events whose data an erasure rewrote, with their data now. A copy read before (the webhook
   * dispatcher keeps the events it is delivering in memory) must not write or send the old data.
   */
  readonly #rewritten = new Map<number, Record<string, unknown>>();
  /** Writes of whole event records, one after the other (see `writeRewrites`). */
  #writes: Promise<unknown> = Promise.resolve();

  /** `push`: whether events are queued for webhook delivery (webhooks.url set). */
  constructor(store: Store, opts: { push: boolean }) {
    this.#store = store;
    this.#push = opts.push;
  }

  async init(): Promise<void> {
    const last = await this.#store.keys(K.eventPrefix(), { reverse: true, limit: 1 });
    this.#nextSeq = last.length ? Number(lastPart(last[0]!)) + 1 : 1;
    // Event ids carry a per-store tag: a store rebuilt from nothing never reuses an id that a
    // receiver de-duplicated before.
    let instance = await this.#store.get<string>('meta!instance');
    if (!instance) {
      instance = crypto.randomBytes(4).toString('hex');
      await this.#store.db.put('meta!instance', this.#store.encode('meta!instance', instance));
    }
    this.#instance = instance;
  }

  /**
   * Called after every batch that added events, with copies of them as written (the webhook
   * dispatcher takes them from here rather than reading and decrypting them back).
   */
  onAppend(fn: (events: readonly EventRecord[]) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Adds an event to a batch. Call inside `store.exclusive` so sequence order is commit order. */
  append(batch: WriteBatch, type: EventType, data: Record<string, unknown>, orderKey: string): EventRecord {
    const seq = this.#nextSeq++;
    const event: EventRecord = {
      id: `evt_${this.#instance}${seq.toString(36).padStart(8, '0')}`,
      seq,
      type,
      createdAt: new Date().toISOString(),
      data,
      orderKey,
      status: this.#push ? 'pending' : 'not_pushed',
      attempts: 0,
      nextAttemptAt: null,
      lastError: null,
      deliveredAt: null,
    };
    batch.put(K.event(seq), event);
    if (this.#push) batch.put(K.eventQueue(seq), '');
    let written = this.#unwritten.get(batch);
    if (!written) {
      const events: EventRecord[] = (written = []);
      this.#unwritten.set(batch, events);
      batch.afterWrite.push(() => {
        for (const fn of this.#listeners) fn(events);
      });
    }
    // a copy as stored: the caller may change its objects after appending
    if (this.#push) written.push(JSON.parse(JSON.stringify(event)) as EventRecord);
    return event;
  }

  async get(seq: number): Promise<EventRecord | undefined> {
    return this.#store.get<EventRecord>(K.event(seq));
  }

  /** Event ids encode their sequence number after the 8-character store tag. */
  seqOf(eventId: string): number | null {
    const m = /^evt_[0-9a-f]{8}([0-9a-z]+)$/.exec(eventId);
    if (!m || !eventId.startsWith(`evt_${this.#instance}`)) return null;
    const n = parseInt(m[1]!, 36);
    return Number.isSafeInteger(n) ? n : null;
  }

  /** Events after a sequence number, in commit order. */
  async list(afterSeq: number, limit: number, filter?: (e: EventRecord) => boolean): Promise<EventRecord[]> {
    const out: EventRecord[] = [];
    let after = afterSeq > 0 ? K.event(afterSeq) : undefined;
    while (out.length < limit) {
      const page = await this.#store.entries<EventRecord>(K.eventPrefix(), { after, limit: filter ? 500 : limit - out.length });
      if (page.length === 0) break;
      for (const [, e] of page) if (!filter || filter(e)) out.push(e);
      after = page[page.length - 1]![0];
    }
    return out.slice(0, limit);
  }

  /** Sequence numbers still to deliver, oldest first (after `afterSeq` when given). */
  async queued(limit = 10_000, afterSeq = 0): Promise<number[]> {
    const keys = await this.#store.keys(K.eventQueuePrefix(), { limit, after: afterSeq > 0 ? K.eventQueue(afterSeq) : undefined });
    return keys.map((k) => Number(lastPart(k)));
  }

  /** Several events read in one go (the dispatcher's queue pages); undefined for a missing one. */
  async getMany(seqs: number[]): Promise<Array<EventRecord | undefined>> {
    return this.#store.getMany<EventRecord>(seqs.map((s) => K.event(s)));
  }

  /**
   * Announces that these events' data is about to be replaced (a data-protection erasure):
   * from now on, state updates of copies read before write the new data, and a delivery not
   * yet sent sends it. `writeRewrites` then stores it.
   */
  stageRewrites(rewrites: Map<number, Record<string, unknown>>): void {
    for (const [seq, data] of rewrites) this.#rewritten.set(seq, data);
  }

  /**
   * Writes `batch` with the staged data of these events put into their current records (id,
   * type, time, order key and delivery state kept). Runs between delivery-state updates, never
   * alongside one, so neither overwrites the other with an old copy.
   */
  writeRewrites(batch: WriteBatch, seqs: Iterable<number>): Promise<void> {
    return this.#serial(async () => {
      const list = [...seqs];
      const current = await this.getMany(list);
      current.forEach((event) => {
        if (event) batch.put(K.event(event.seq), this.refresh(event));
      });
      await batch.write();
    });
  }

  /** Brings a copy of an event read earlier up to date with an erasure that rewrote it since. */
  refresh(event: EventRecord): EventRecord {
    const data = this.#rewritten.get(event.seq);
    if (data) event.data = data;
    return event;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#writes.then(fn, fn);
    this.#writes = run.catch(() => undefined);
    return run;
  }

  async update(event: EventRecord): Promise<void> {
    await this.updateMany([event]);
  }

  /** Records the state of several events in one write (delivery outcomes). */
  updateMany(events: EventRecord[]): Promise<void> {
    return this.#serial(async () => {
      const batch = this.#store.batch();
      for (const event of events) {
        batch.put(K.event(event.seq), this.refresh(event));
        if (event.status !== 'pending' || !this.#push) batch.del(K.eventQueue(event.seq));
        else batch.put(K.eventQueue(event.seq), '');
      }
      await batch.write();
    });
  }
}
