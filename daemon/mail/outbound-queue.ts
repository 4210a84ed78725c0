import type { Logger } from 'pino';
import type { RelayEntry, RelayRejection } from '../store/records.js';
import type { AcceptInput, OutcomeType, RelayRecords } from '../store/relay.js';
import type { WriteBatch } from '../store/store.js';
import type { RelayTargets } from './relay-targets.js';
import { classifyFailure, describeFailure, nextRetryDelayMs, type SmtpFailure } from './smtp-replies.js';
import { createSmtpTransport, type RelayTarget, type SmtpTransport, type TransportSettings } from './smtp-transport.js';

/**
 * Sends what the submission listener accepted, from the durable queue in LevelDB: several
 * messages at once, each through its user's own mail server (pooled connections per account),
 * retried on the schedule of `smtp.relay.retryDelaysSeconds` while the server defers, and
 * finished with a `message.sent` or `message.failed` event written in the same batch that
 * removes it from the queue.
 */

export interface OutboundQueueOptions {
  concurrency: number;
  retryDelaysSeconds: readonly number[];
  durableAccept: boolean;
  transport: TransportSettings;
  /** How long `stop` waits for sends in flight before cutting them off. */
  stopTimeoutMs?: number;
}

export interface OutboundHooks {
  /**
   * A message went out to at least one recipient: store it in its thread, writing `finish`
   * (the entry leaving the queue, its outcome event) in the same batch, and say whether it did.
   * When this returns false or throws, the queue finishes the entry on its own.
   */
  store?: (entry: RelayEntry, raw: Buffer, finish: (batch: WriteBatch) => void) => Promise<boolean>;
  /** After the message is finished (a copy to the Sent folder). */
  afterSent?: (entry: RelayEntry, raw: Buffer) => Promise<void>;
  /** Whether the entry's thread is secret now: outcome events say so, as every event of a thread does. */
  secretOf?: (threadId: string) => Promise<boolean>;
  observe?: { depth?: (n: number) => void; outcome?: (o: 'sent' | 'failed' | 'deferred') => void };
}

/** Idle pooled connections are closed after this long, so quiet accounts hold no sockets. */
const TRANSPORT_IDLE_MS = 120_000;

type SendError = Error & SmtpFailure & { rejectedErrors?: Array<Error & SmtpFailure & { recipient?: string }> };

export class OutboundQueue {
  readonly #records: RelayRecords;
  readonly #targets: RelayTargets;
  readonly #log: Logger;
  readonly #opts: OutboundQueueOptions;
  readonly #hooks: OutboundHooks;
  /** Entries waiting their turn (not in flight), by queue id. */
  readonly #entries = new Map<string, RelayEntry>();
  /** Due now, in arrival order. */
  readonly #ready: string[] = [];
  readonly #inFlight = new Map<string, Promise<void>>();
  readonly #inFlightUsers = new Map<string, string>();
  readonly #inFlightThreads = new Map<string, string>();
  /** Threads whose messages are held back while their candidate is erased, with how many holds each. */
  readonly #withheld = new Map<string, number>();
  /** Users whose consent was revoked while one of their messages was in flight: it is not retried. */
  readonly #revoked = new Map<string, string>();
  readonly #transports = new Map<string, { transport: SmtpTransport; lastUsed: number }>();
  #timer: NodeJS.Timeout | null = null;
  #sweep: NodeJS.Timeout | null = null;
  #stopped = true;
  #stopping: Promise<void> | null = null;

  constructor(records: RelayRecords, targets: RelayTargets, log: Logger, opts: OutboundQueueOptions, hooks: OutboundHooks = {}) {
    this.#records = records;
    this.#targets = targets;
    this.#log = log;
    this.#opts = opts;
    this.#hooks = hooks;
  }

  /** Loads what a previous run left queued and starts sending it. */
  async start(): Promise<void> {
    this.#stopped = false;
    for (const entry of await this.#records.list()) {
      if (entry.sendingSince) {
        this.#log.warn({ queueId: entry.queueId, userId: entry.userId, since: entry.sendingSince }, 'a send was cut off by a crash: sending again (same Message-ID, which receiving systems de-duplicate)');
      }
      this.#add(entry);
    }
    this.#sweep = setInterval(() => this.#closeIdleTransports(), TRANSPORT_IDLE_MS / 2);
    this.#sweep.unref();
    this.#observeDepth();
    this.#pump();
  }

  /** Messages accepted and not finished (waiting and in flight). */
  get depth(): number {
    return this.#entries.size + this.#inFlight.size;
  }

  /** Records an accepted message (with its thread) durably, then queues it. */
  async accept(input: Omit<AcceptInput, 'durable'>): Promise<RelayEntry> {
    if (this.#stopped) throw new Error('the relay is stopping');
    const entry = await this.#records.accept({ ...input, durable: this.#opts.durableAccept });
    this.#add(entry);
    this.#observeDepth();
    this.#pump();
    return entry;
  }

  #add(entry: RelayEntry): void {
    this.#entries.set(entry.queueId, entry);
    this.#ready.push(entry.queueId);
  }

  /** Starts sends while there is room; entries not yet due wait for the one timer. */
  #pump(): void {
    if (this.#stopped) return;
    const now = Date.now();
    let nextDue = Infinity;
    const later: string[] = [];
    while (this.#inFlight.size < this.#opts.concurrency && this.#ready.length) {
      const id = this.#ready.shift()!;
      const entry = this.#entries.get(id);
      if (!entry) continue;
      const due = entry.nextAttemptAt ? Date.parse(entry.nextAttemptAt) : 0;
      if (this.#withheld.has(entry.threadId) || due > now) {
        later.push(id);
        nextDue = Math.min(nextDue, due);
        continue;
      }
      this.#entries.delete(id);
      const p = this.#deliver(entry)
        .catch((err) => this.#log.error({ err, queueId: id }, 'relaying a message failed unexpectedly; it stays queued'))
        .finally(() => {
          this.#inFlight.delete(id);
          this.#inFlightUsers.delete(id);
          this.#inFlightThreads.delete(id);
          this.#observeDepth();
          this.#pump();
        });
      this.#inFlight.set(id, p);
      this.#inFlightUsers.set(id, entry.userId);
      this.#inFlightThreads.set(id, entry.threadId);
    }
    this.#ready.push(...later);
    for (const id of this.#ready) {
      const at = this.#entries.get(id)?.nextAttemptAt;
      if (at) nextDue = Math.min(nextDue, Date.parse(at));
    }
    this.#arm(nextDue);
  }

  /** One timer for the earliest retry that is not due yet. */
  #arm(at: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (!Number.isFinite(at)) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#pump();
    }, Math.max(0, at - Date.now()));
    this.#timer.unref();
  }

  #transport(target: RelayTarget): SmtpTransport {
    let slot = this.#transports.get(target.key);
    if (!slot) {
      slot = { transport: createSmtpTransport(target, this.#opts.transport), lastUsed: Date.now() };
      this.#transports.set(target.key, slot);
    }
    slot.lastUsed = Date.now();
    return slot.transport;
  }

  #closeIdleTransports(): void {
    for (const [key, slot] of this.#transports) {
      if (Date.now() - slot.lastUsed > TRANSPORT_IDLE_MS && !this.#busy(key)) {
        slot.transport.close();
        this.#transports.delete(key);
      }
    }
  }

  #busy(key: string): boolean {
    const t = this.#transports.get(key)?.transport as unknown as { transporter?: { pendingCount?: () => number } } | undefined;
    return (t?.transporter?.pendingCount?.() ?? 0) > 0;
  }

  async #deliver(entry: RelayEntry): Promise<void> {
    const log = this.#log.child({ queueId: entry.queueId, userId: entry.userId });
    const raw = await this.#records.raw(entry.queueId);
    if (!raw) {
      await this.#finish(entry, null, 'the queued message bytes are missing from the store', log);
      return;
    }
    const resolved = await this.#targets.resolve(entry.userId);
    if (!resolved.ok && !resolved.retry) {
      entry.rejected.push(...entry.to.map((recipient) => ({ recipient, error: resolved.reason })));
      entry.to = [];
      await this.#finish(entry, raw, resolved.reason, log);
      return;
    }
    entry.sendingSince = new Date().toISOString();
    entry.attempts += 1;
    await this.#records.update(entry);
    const { accepted, refused, failure } = resolved.ok
      ? await this.#attempt(entry, raw, resolved.target, log)
      : { accepted: [], refused: [], failure: Object.assign(new Error(resolved.reason), { code: 'EOAUTH2' }) as SendError };
    if (this.#stopped && (failure || refused.length)) return; // shutting down: stays queued, sent again on the next start

    const acceptedSet = new Set(accepted.map((a) => a.toLowerCase()));
    const before = entry.to;
    entry.accepted.push(...before.filter((r) => acceptedSet.has(r.toLowerCase())));
    let remaining = before.filter((r) => !acceptedSet.has(r.toLowerCase()));
    let lastError: string | null = null;
    if (failure) {
      lastError = describeFailure(failure);
      if (classifyFailure(failure).action === 'fail') {
        entry.rejected.push(...remaining.map((recipient) => ({ recipient, error: lastError! })));
        remaining = [];
      }
    }
    for (const { recipient, error } of refused) {
      const text = describeFailure(error);
      lastError = text;
      if (classifyFailure(error).action === 'fail') {
        entry.rejected.push({ recipient, error: text });
        remaining = remaining.filter((r) => r.toLowerCase() !== recipient.toLowerCase());
      }
    }
    entry.to = remaining;
    entry.sendingSince = null;
    entry.lastError = lastError;

    if (remaining.length === 0) {
      await this.#finish(entry, raw, entry.rejected.length ? entry.rejected.map((r) => `${r.recipient}: ${r.error}`).join('; ') : null, log);
      return;
    }
    const delay = nextRetryDelayMs(this.#opts.retryDelaysSeconds, entry.attempts);
    if (delay === null) {
      const reason = `gave up after ${entry.attempts} attempts: ${lastError ?? 'no answer'}`;
      entry.rejected.push(...remaining.map((recipient): RelayRejection => ({ recipient, error: reason })));
      entry.to = [];
      await this.#finish(entry, raw, reason, log);
      return;
    }
    const revoked = this.#revoked.get(entry.userId);
    if (revoked) {
      entry.rejected.push(...remaining.map((recipient): RelayRejection => ({ recipient, error: revoked })));
      entry.to = [];
      await this.#finish(entry, raw, revoked, log);
      return;
    }
    entry.nextAttemptAt = new Date(Date.now() + delay).toISOString();
    await this.#records.update(entry);
    this.#hooks.observe?.outcome?.('deferred');
    log.info({ attempts: entry.attempts, nextAttemptAt: entry.nextAttemptAt, reason: lastError, pending: remaining.length }, 'relay deferred; will retry');
    if (!this.#stopped) this.#add(entry);
  }

  /**
   * One hand-over to the mail server. An OAuth2 token the server refuses is refreshed and the
   * send tried once more at once: a token revoked or expired early is routine, not a failure.
   */
  async #attempt(entry: RelayEntry, raw: Buffer, target: RelayTarget, log: Logger): Promise<{ accepted: string[]; refused: Array<{ recipient: string; error: SendError }>; failure: SendError | null }> {
    for (let round = 0; ; round++) {
      try {
        const info = await this.#transport(target).sendMail({ envelope: { from: entry.from, to: entry.to }, raw });
        const refused = (info.rejectedErrors ?? []).map((e) => ({ recipient: String((e as SendError & { recipient?: string }).recipient ?? ''), error: e as SendError }));
        return { accepted: info.accepted.map(String), refused, failure: null };
      } catch (err) {
        const failure = err as SendError;
        // every recipient refused: nodemailer reports each one in rejectedErrors
        if (failure.code === 'EENVELOPE' && failure.rejectedErrors?.length) {
          return { accepted: [], refused: failure.rejectedErrors.map((e) => ({ recipient: String(e.recipient ?? ''), error: e })), failure: null };
        }
        if (round === 0 && failure.code === 'EAUTH' && target.auth && 'accessToken' in target.auth) {
          log.info('the mail server refused the access token; refreshing it and sending again');
          const again = await this.#targets.resolve(entry.userId, { rejected: target.auth.accessToken });
          if (again.ok) {
            target = again.target;
            continue;
          }
        }
        return { accepted: [], refused: [], failure };
      }
    }
  }

  /**
   * The user revoked the consent whose SMTP login these messages were to be sent with: every
   * queued message of theirs fails now (`message.failed` with `reason`), its bytes leave the
   * store, and pooled connections holding their login close. A send already in flight ends as
   * it ends, but is not retried. Returns how many queued messages failed.
   */
  async failUser(userId: string, reason: string): Promise<number> {
    const log = this.#log.child({ userId });
    const mine = [...this.#entries.values()].filter((e) => e.userId === userId);
    for (const e of mine) this.#entries.delete(e.queueId);
    if ([...this.#inFlightUsers.values()].includes(userId)) {
      this.#revoked.set(userId, reason);
      const flying = [...this.#inFlightUsers].filter(([, u]) => u === userId).map(([id]) => this.#inFlight.get(id));
      void Promise.allSettled(flying).then(() => this.#revoked.delete(userId));
    }
    for (const e of mine) {
      e.rejected.push(...e.to.map((recipient): RelayRejection => ({ recipient, error: reason })));
      e.to = [];
      await this.#finish(e, null, reason, log.child({ queueId: e.queueId }));
    }
    for (const [key, slot] of this.#transports) {
      if (key.startsWith(`user:${userId}:`)) {
        slot.transport.close();
        this.#transports.delete(key);
      }
    }
    this.#observeDepth();
    return mine.length;
  }

  /**
   * A candidate is being erased: messages of these threads are not sent until the returned
   * function is called, and this resolves once none of them is in flight. On release, a message
   * whose bytes are gone (the erasure deleted its queue entry) leaves the queue without an
   * outcome event, which would name the erased recipients.
   */
  async withhold(threadIds: ReadonlySet<string>): Promise<() => Promise<void>> {
    for (const id of threadIds) this.#withheld.set(id, (this.#withheld.get(id) ?? 0) + 1);
    const flying = [...this.#inFlightThreads].filter(([, t]) => threadIds.has(t)).map(([id]) => this.#inFlight.get(id));
    await Promise.allSettled(flying);
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      for (const id of threadIds) {
        const n = (this.#withheld.get(id) ?? 1) - 1;
        if (n > 0) this.#withheld.set(id, n);
        else this.#withheld.delete(id);
      }
      for (const e of [...this.#entries.values()]) {
        if (threadIds.has(e.threadId) && !(await this.#records.raw(e.queueId))) {
          this.#entries.delete(e.queueId);
          this.#log.info({ queueId: e.queueId, userId: e.userId }, 'a queued message of an erased candidate is not sent');
        }
      }
      this.#observeDepth();
      this.#pump();
    };
  }

  /** Removes the entry with its outcome event; a message that reached anyone is stored in its thread in the same batch. */
  async #finish(entry: RelayEntry, raw: Buffer | null, error: string | null, log: Logger): Promise<void> {
    const sent = error === null;
    const type: OutcomeType = sent ? 'message.sent' : 'message.failed';
    const secret = this.#hooks.secretOf ? await this.#hooks.secretOf(entry.threadId).catch(() => false) : false;
    const data = { userId: entry.userId, messageId: entry.messageId, queueId: entry.queueId, error, threadId: entry.threadId, secret, accepted: entry.accepted, rejected: entry.rejected };
    const reached = !!raw && entry.accepted.length > 0;
    let finished = false;
    if (reached && this.#hooks.store) {
      try {
        finished = await this.#hooks.store(entry, raw, (batch) => this.#records.finishInBatch(batch, entry, type, data));
      } catch (err) {
        log.warn({ err }, 'storing a relayed message in its thread failed (it was sent)');
      }
    }
    if (!finished) await this.#records.finish(entry, type, data);
    this.#hooks.observe?.outcome?.(sent ? 'sent' : 'failed');
    if (sent) log.info({ attempts: entry.attempts, recipients: entry.accepted.length }, 'relayed');
    else log.warn({ attempts: entry.attempts, accepted: entry.accepted.length, rejected: entry.rejected.length, reason: error }, 'relay failed');
    if (reached && this.#hooks.afterSent) await this.#hooks.afterSent(entry, raw).catch((err) => log.warn({ err }, 'copying a relayed message to Sent failed (it was sent)'));
  }

  #observeDepth(): void {
    this.#hooks.observe?.depth?.(this.depth);
  }

  /** Stops sending: waits (bounded) for sends in flight, then closes every connection. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      if (this.#timer) clearTimeout(this.#timer);
      if (this.#sweep) clearInterval(this.#sweep);
      const drained = Promise.allSettled([...this.#inFlight.values()]);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), this.#opts.stopTimeoutMs ?? 10_000);
      });
      const outcome = await Promise.race([drained, late]);
      clearTimeout(timer);
      // A send cut off here keeps its sendingSince mark and is sent again on the next start.
      for (const { transport } of this.#transports.values()) {
        try {
          (transport.transporter as unknown as { close: (o?: { force?: boolean }) => void }).close({ force: outcome === 'late' });
        } catch (err) {
          this.#log.warn({ err }, 'closing an SMTP connection pool failed');
        }
      }
      this.#transports.clear();
      if (outcome === 'late') await drained;
    })();
    return this.#stopping;
  }
}
