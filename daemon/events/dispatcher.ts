import type { Logger } from 'pino';
import type { Outbox } from '../store/outbox.js';
import type { EventRecord } from '../store/records.js';
import { signatureHeader } from './signature.js';
import { retryDelay, type RetryPolicy } from './retry.js';
import { WebhookClient } from './webhook-client.js';

/**
 * Pushes outbox events to the ATS. Several deliveries are in flight at once, but events that
 * share an order key (a thread, a mailbox) go one at a time in sequence order: a later reply
 * never overtakes an earlier one, and a slow thread does not hold up the others.
 */

/** Queue entries read per page, and the number of events in memory below which more are read. */
const LOAD_PAGE = 1_000;
const LOAD_LOW_WATER = 5_000;

export interface DispatcherOptions {
  url: string;
  secret: string;
  timeoutMs: number;
  concurrency: number;
  retry: RetryPolicy;
}

export interface DeliveryObserver {
  (outcome: 'delivered' | 'retry' | 'failed', seconds: number): void;
}

export class WebhookDispatcher {
  readonly #outbox: Outbox;
  readonly #log: Logger;
  readonly #opts: DispatcherOptions;
  readonly #observe: DeliveryObserver;
  /** Per order key, the sequence numbers still to deliver, oldest first. */
  readonly #keyQueues = new Map<string, number[]>();
  /** Keys whose head may be delivered now, in the order they became ready. */
  readonly #ready: string[] = [];
  readonly #readySet = new Set<string>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #cache = new Map<number, EventRecord>();
  #highestLoaded = 0;
  /** More queued events may be in the store than were loaded. */
  #backlog = false;
  #loading: Promise<void> | null = null;
  #reloadAgain = false;
  #stopped = true;
  #unsubscribe: (() => void) | null = null;
  readonly #client: WebhookClient;
  /** Outcomes waiting for the next write; one write records all that arrived meanwhile. */
  #outcomes: Array<{ event: EventRecord; recorded: () => void }> = [];
  #writing = false;

  constructor(outbox: Outbox, log: Logger, opts: DispatcherOptions, observe: DeliveryObserver = () => {}) {
    this.#outbox = outbox;
    this.#log = log;
    this.#opts = opts;
    this.#observe = observe;
    this.#client = new WebhookClient(opts.url, { concurrency: opts.concurrency, timeoutMs: opts.timeoutMs });
  }

  async start(): Promise<void> {
    this.#stopped = false;
    this.#unsubscribe = this.#outbox.onAppend((events) => this.#appended(events));
    await this.#load();
  }

  /** Re-queues an event (redelivery of a failed one). */
  async redeliver(event: EventRecord): Promise<void> {
    event.status = 'pending';
    event.attempts = 0;
    event.nextAttemptAt = null;
    event.lastError = null;
    await this.#outbox.update(event);
    this.#enqueue(event);
    this.#pump();
  }

  get queuedCount(): number {
    let n = 0;
    for (const q of this.#keyQueues.values()) n += q.length;
    return n;
  }

  /**
   * New events as they were written: queued at once, without reading them back from the store
   * (a read and a decryption each), unless older events still wait in the store, which are
   * read first, in order.
   */
  #appended(events: readonly EventRecord[]): void {
    if (this.#stopped) return;
    if (this.#loading || this.#backlog) {
      void this.#load();
      return;
    }
    for (const event of events) {
      if (this.#cache.size >= LOAD_LOW_WATER) {
        // enough in memory: this one and the rest are read from the store when it drains
        this.#backlog = true;
        break;
      }
      this.#highestLoaded = Math.max(this.#highestLoaded, event.seq);
      if (event.status === 'pending' && !this.#cache.has(event.seq)) this.#enqueue(event);
    }
    this.#pump();
  }

  /** Reads queue entries written since the last load. Coalesces bursts of appends. */
  #load(): Promise<void> {
    if (this.#loading) {
      this.#reloadAgain = true;
      return this.#loading;
    }
    this.#loading = (async () => {
      do {
        this.#reloadAgain = false;
        // The queue is read in pages after the last event loaded, and only while few events
        // wait in memory: a backlog (a receiver down for days) streams through instead of
        // loading whole. Reading just the first page used to leave every event past it
        // waiting until some new event was appended.
        this.#backlog = true;
        while (!this.#stopped && this.#cache.size < LOAD_LOW_WATER) {
          const seqs = await this.#outbox.queued(LOAD_PAGE, this.#highestLoaded);
          const events = await this.#outbox.getMany(seqs);
          for (const [i, event] of events.entries()) {
            this.#highestLoaded = Math.max(this.#highestLoaded, seqs[i]!);
            if (event && event.status === 'pending') this.#enqueue(event);
          }
          this.#pump();
          if (seqs.length < LOAD_PAGE) {
            this.#backlog = false;
            break;
          }
        }
        this.#pump();
      } while (this.#reloadAgain && !this.#stopped);
    })()
      .catch((err) => this.#log.error({ err }, 'loading the webhook queue failed'))
      .finally(() => {
        this.#loading = null;
      });
    return this.#loading;
  }

  #enqueue(event: EventRecord): void {
    this.#cache.set(event.seq, event);
    const q = this.#keyQueues.get(event.orderKey);
    if (q) {
      // loaded events come in sequence order: appending is the common case, and a backlog of
      // one thread must not cost a sort per event
      if (!q.length || q[q.length - 1]! < event.seq) q.push(event.seq);
      else if (!q.includes(event.seq)) q.splice(q.findIndex((s) => s > event.seq), 0, event.seq);
      return;
    }
    this.#keyQueues.set(event.orderKey, [event.seq]);
    this.#schedule(event.orderKey, event);
  }

  /** Makes a key ready now, or when its head's retry time comes. */
  #schedule(key: string, head: EventRecord): void {
    const wait = head.nextAttemptAt ? Date.parse(head.nextAttemptAt) - Date.now() : 0;
    if (wait <= 0) {
      if (!this.#readySet.has(key)) {
        this.#readySet.add(key);
        this.#ready.push(key);
      }
      return;
    }
    clearTimeout(this.#timers.get(key));
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      if (this.#stopped) return;
      if (!this.#readySet.has(key)) {
        this.#readySet.add(key);
        this.#ready.push(key);
      }
      this.#pump();
    }, wait);
    timer.unref();
    this.#timers.set(key, timer);
  }

  #pump(): void {
    while (!this.#stopped && this.#inFlight.size < this.#opts.concurrency && this.#ready.length) {
      const key = this.#ready.shift()!;
      this.#readySet.delete(key);
      const seq = this.#keyQueues.get(key)?.[0];
      const event = seq === undefined ? undefined : this.#cache.get(seq);
      if (!event) continue;
      const p: Promise<void> = this.#deliver(event).finally(() => {
        this.#inFlight.delete(p);
        this.#pump();
      });
      this.#inFlight.add(p);
    }
  }

  async #deliver(event: EventRecord): Promise<void> {
    this.#outbox.refresh(event); // an erasure may have rewritten it since it was loaded
    const body = JSON.stringify({ id: event.id, type: event.type, createdAt: event.createdAt, data: event.data });
    const started = performance.now();
    const error = await this.#client.post(body, {
      'content-type': 'application/json',
      'user-agent': 'mailsync',
      'x-mailsync-event': event.type,
      'x-mailsync-delivery': event.id,
      'x-mailsync-signature': signatureHeader(this.#opts.secret, body),
    });
    const seconds = (performance.now() - started) / 1000;
    if (this.#stopped && error) return; // shutting down: the event stays queued for the next start
    event.attempts += 1;
    const key = event.orderKey;
    if (!error) {
      event.status = 'delivered';
      event.deliveredAt = new Date().toISOString();
      event.lastError = null;
      event.nextAttemptAt = null;
      this.#observe('delivered', seconds);
    } else if (event.attempts >= this.#opts.retry.attempts) {
      event.status = 'failed';
      event.lastError = error;
      event.nextAttemptAt = null;
      this.#observe('failed', seconds);
      this.#log.warn({ eventId: event.id, type: event.type, attempts: event.attempts, reason: error }, 'webhook delivery failed for good; the event stays listed for redelivery');
    } else {
      event.lastError = error;
      event.nextAttemptAt = new Date(Date.now() + retryDelay(this.#opts.retry, event.attempts)).toISOString();
      this.#observe('retry', seconds);
      this.#log.info({ eventId: event.id, type: event.type, attempts: event.attempts, nextAttemptAt: event.nextAttemptAt, reason: error }, 'webhook delivery will be retried');
    }
    // the thread's next event goes only once this outcome is written: a crash in between
    // delivers this one again (at least once), never the next one before it
    await this.#record(event);
    const q = this.#keyQueues.get(key);
    if (!q) return;
    if (event.status !== 'pending') {
      // not shift(): a redelivered older event may have been queued in front of this one
      // while it was in flight, and must not be the one dropped
      const i = q.indexOf(event.seq);
      if (i >= 0) q.splice(i, 1);
      this.#cache.delete(event.seq);
    }
    const head = q[0] === undefined ? undefined : this.#cache.get(q[0]);
    if (!head) this.#keyQueues.delete(key);
    else this.#schedule(key, head);
    if (this.#backlog && !this.#loading && this.#cache.size < LOAD_LOW_WATER) void this.#load();
  }

  /** Resolves once `event`'s state is written, in one batch with the others that came meanwhile. */
  #record(event: EventRecord): Promise<void> {
    return new Promise((recorded) => {
      this.#outcomes.push({ event, recorded });
      if (!this.#writing) void this.#writeOutcomes();
    });
  }

  async #writeOutcomes(): Promise<void> {
    this.#writing = true;
    while (this.#outcomes.length) {
      const group = this.#outcomes.splice(0);
      try {
        await this.#outbox.updateMany(group.map((o) => o.event));
      } catch (err) {
        this.#log.error({ err, events: group.map((o) => o.event.id) }, 'recording webhook outcomes failed; those events stay queued for the next start');
      }
      for (const o of group) o.recorded();
    }
    this.#writing = false;
  }

  /** Stops taking new deliveries and waits (bounded) for those in flight. */
  async stop(timeoutMs = 5_000): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#unsubscribe?.();
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    const drained = Promise.allSettled([...this.#inFlight]);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), timeoutMs);
    });
    const outcome = await Promise.race([drained, late]);
    clearTimeout(timer);
    // late ones are cut off: they fail at once, stay queued and are not recorded
    this.#client.close();
    if (outcome === 'late') await drained;
    await this.#loading;
  }
}
