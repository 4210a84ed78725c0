import type { Logger } from 'pino';
import { parseHeaderBlock, firstHeader, headerEnd, type HeaderField } from '../threads/headers.js';
import { extractIdHeaders, normaliseId, type IdHeaders } from '../threads/message-ids.js';
import { matchKeys, trackedComponents } from '../threads/matching.js';
import type { Readable } from 'node:stream';
import { headerSummary, parseMessage, type ParsedMessage } from '../mail/parse.js';
import { parseMessageStream } from '../mail/parse-stream.js';
import { detectAutoReply } from '../threads/auto-reply.js';
import { messageKey, type IngestResult, type Location, type Threads } from '../store/threads.js';
import type { Quarantine, QuarantineReason } from '../store/quarantine.js';
import type { ThreadOrigin } from '../store/records.js';
import type { WriteBatch } from '../store/store.js';

/**
 * From header fields to stored threads, independent of where the mail came from (IMAP
 * folder, SMTP intake). Header fields decide; the full source is parsed only for messages
 * that belong to a tracked thread.
 */

export interface HeaderRecord {
  uid: number;
  size: number;
  internalDate: Date | null;
  /**
   * The header block as fetched (the fields ID_HEADER_NAMES names). Kept as bytes, not parsed
   * fields: an initial sync holds a record per message of the mailbox until it has decided,
   * and parsed fields took three times the memory (see `headerFields`).
   */
  headers: Buffer;
  ids: IdHeaders;
  keys: string[];
  key: string;
  /** Set by `decide` on tracked records: every key of its thread component in the batch. */
  componentKeys?: string[];
  /** The provider's id of this message (X-GM-MSGID), the same in every folder it shows in. */
  emailId?: string | null;
}

export interface IngestContext {
  userId: string;
  folder: string;
  location: Location | null;
  origin?: ThreadOrigin;
  force?: boolean;
  candidateIds?: string[];
  /** More records for the batch that stores the message (see IngestInput.alsoWrite). */
  alsoWrite?: (batch: WriteBatch) => void;
}

export interface FetchedSource {
  source: Buffer;
  /** False when only the first bytes were read (the message is larger than the cap). */
  complete: boolean;
}

/** A message too large to keep: parsed while it streams in, never held whole. Null: gone. */
export interface StreamedSource {
  stream: () => Promise<Readable | null>;
}

/** A message not fetched at all (larger than sync.maxMessageBytes): only its header fields are known. */
export interface SkippedSource {
  skipped: string;
}

export type SourceResult = FetchedSource | StreamedSource | SkippedSource;

export interface BatchOptions {
  /** Where each record was seen. */
  context: (rec: HeaderRecord) => IngestContext;
  /** Full sources of some records, by UID; a record left out is "not fetchable yet". */
  fetchSources: (recs: HeaderRecord[]) => Promise<Map<number, SourceResult>>;
  /** Remember untracked records (keyed id hashes) so a parent arriving later finds them. */
  rememberUntracked: boolean;
  pendingTtlMs: number;
  /** After each chunk: the highest UID handled and the first UID that could not be fetched. */
  onChunk?: (lastUid: number, missingUid: number | null) => Promise<void>;
  chunkSize?: number;
}

export type OnStored = (keys: string[], ctx: IngestContext, reconsider: Location[]) => void;

export interface IngestorOptions {
  parseTimeoutMs: number;
  onStored?: OnStored;
  /** Longest text and HTML kept per message (store.maxTextBytes). */
  maxTextBytes?: number;
  /** Where messages that could not be stored are listed (without it, such a failure throws). */
  quarantine?: Quarantine;
  onQuarantined?: (reason: QuarantineReason) => void;
}

export class Ingestor {
  readonly #threads: Threads;
  readonly #log: Logger;
  readonly #parseTimeoutMs: number;
  /**
   * Called for every newly stored message with its match keys and the untracked mail that
   * pointed at it (queued durably in the same batch, to be looked at again).
   */
  readonly #onStored: OnStored;

  readonly #maxTextBytes: number;
  readonly #quarantine: Quarantine | null;
  readonly #onQuarantined: (reason: QuarantineReason) => void;

  constructor(threads: Threads, log: Logger, opts: IngestorOptions) {
    this.#threads = threads;
    this.#log = log;
    this.#parseTimeoutMs = opts.parseTimeoutMs;
    this.#onStored = opts.onStored ?? (() => {});
    this.#maxTextBytes = opts.maxTextBytes ?? 1_048_576;
    this.#quarantine = opts.quarantine ?? null;
    this.#onQuarantined = opts.onQuarantined ?? (() => {});
  }

  /**
   * Parses fetched header fields into what matching needs. `locationKey` keys id-less mail (B02);
   * a provider message id (Gmail) keys it better, as it stays the same across folders. A provider
   * thread id joins the match keys: Gmail's conversation is extra evidence of one thread.
   */
  headerRecord(uid: number, headers: Buffer, size: number, internalDate: Date | null, locationKey: string, provider: { emailId: string | null; threadKey: string | null } = { emailId: null, threadKey: null }): HeaderRecord {
    // a copy of the header block alone: `headers` may be a whole message, or a view into a
    // larger buffer that keeping a slice would keep alive
    const block = Buffer.from(headers.subarray(0, headerEnd(headers)));
    const fields = parseHeaderBlock(block);
    const ids = extractIdHeaders(fields);
    const keys = matchKeys(ids);
    if (provider.threadKey) keys.push(provider.threadKey);
    return {
      uid, size, internalDate, headers: block, ids, keys, emailId: provider.emailId,
      key: messageKey(ids.messageId ? normaliseId(ids.messageId) : null, firstHeader(fields, 'date'), firstHeader(fields, 'subject'), provider.emailId ? `provider\n${provider.emailId}` : locationKey),
    };
  }

  /** Indexes (into `records`) of the messages that belong to tracked threads. */
  async decide(records: HeaderRecord[]): Promise<Set<number>> {
    const tracked = await this.#threads.trackedKeys(records.flatMap((r) => r.keys));
    const components = trackedComponents(records.map((r) => r.keys), (k) => tracked.has(k));
    for (const [i, keys] of components) records[i]!.componentKeys = keys;
    return new Set(components.keys());
  }

  /**
   * Stores the tracked records of a batch (fetching sources only for messages not stored
   * yet; a message already stored from elsewhere only gains a sighting) and remembers the
   * untracked ones. Stops at the first message that cannot be fetched, so the caller does not
   * move its watermark past it (B44).
   */
  async processBatch(records: HeaderRecord[], tracked: Set<number>, opts: BatchOptions): Promise<{ stored: number; missingUid: number | null }> {
    let stored = 0;
    const indexed = records.map((rec, i) => ({ rec, tracked: tracked.has(i) }));
    const size = opts.chunkSize ?? 25;
    for (let i = 0; i < indexed.length;) {
      // A chunk holds up to `size` tracked messages (one FETCH of their sources) and at most
      // 40 times as many records in all. Chunks of `size` records whatever their kind made a
      // 50,000-message initial sync with 2 % tracked pay ~2,000 watermark writes and ~700
      // source FETCH round trips of one or two messages each (measured: most of its time).
      let end = i, trackedInChunk = 0;
      while (end < indexed.length && trackedInChunk < size && end - i < size * 40) if (indexed[end++]!.tracked) trackedInChunk++;
      const part = indexed.slice(i, end);
      i = end;
      const need: HeaderRecord[] = [];
      const pending: Array<{ keys: string[]; loc: Location }> = [];
      for (const { rec, tracked: isTracked } of part) {
        const ctx = opts.context(rec);
        if (!isTracked) {
          // mail older than the pending window waits for no late parent
          const recent = !rec.internalDate || Date.now() - rec.internalDate.getTime() < opts.pendingTtlMs;
          if (opts.rememberUntracked && ctx.location && rec.keys.length && recent) pending.push({ keys: rec.keys, loc: ctx.location });
          continue;
        }
        if (!ctx.location || !(await this.#threads.addSighting(rec.key, ctx.location))) need.push(rec);
      }
      // one write for the chunk's untracked mail, before its watermark moves past it
      if (pending.length) await this.#threads.rememberPendingMany(pending, opts.pendingTtlMs);
      const sources = need.length ? await opts.fetchSources(need) : new Map<number, SourceResult>();
      let missingUid: number | null = null;
      for (const rec of need) {
        const got = sources.get(rec.uid);
        // the batch decided it is tracked (a parent may be in a folder stored after this one):
        // storing must not ask again with less knowledge than the decision had, and indexes the
        // whole component so the relatives stored later join this thread
        const keys = rec.componentKeys ? [...new Set([...rec.keys, ...rec.componentKeys])] : rec.keys;
        const ctx = { ...opts.context(rec), force: true };
        let result: IngestResult | null;
        try {
          result = got ? await this.#take({ ...rec, keys }, got, ctx) : null;
        } catch (err) {
          // a message that breaks storing is listed and passed over: it never stops the folder
          await this.#storeFailed(rec, ctx, err);
          continue;
        }
        if (!result) missingUid ??= rec.uid;
        else if (result.status === 'stored') stored++;
      }
      await opts.onChunk?.(part[part.length - 1]!.rec.uid, missingUid);
      if (missingUid !== null) return { stored, missingUid };
    }
    return { stored, missingUid: null };
  }

  /** Parses and stores one message. Never throws for bad mail: it is stored with the reason. */
  async ingest(rec: HeaderRecord, source: Buffer, complete: boolean, ctx: IngestContext): Promise<IngestResult> {
    const parsed = await parseMessage(source, { timeoutMs: this.#parseTimeoutMs, fallbackDate: rec.internalDate ?? undefined });
    let reason: QuarantineReason | null = parsed.parseError ? (/longer than/.test(parsed.parseError) ? 'parse_timeout' : 'parse_failed') : null;
    if (!complete) {
      parsed.parseError = `only the first ${source.length} of ${rec.size} bytes were read (larger than store.maxRawBytes)`;
      reason = 'too_large';
    }
    return this.#store(rec, parsed, complete ? source : null, ctx, reason);
  }

  /** A fetched, streamed or skipped source into the store; null when the message is gone. */
  async #take(rec: HeaderRecord, got: SourceResult, ctx: IngestContext): Promise<IngestResult | null> {
    if ('source' in got) return this.ingest(rec, got.source, got.complete, ctx);
    if ('skipped' in got) return this.#store(rec, headerOnly(rec, got.skipped), null, ctx, 'too_large');
    const stream = await got.stream();
    if (!stream) return null;
    const parsed = await parseMessageStream(stream, { timeoutMs: this.#parseTimeoutMs, fallbackDate: rec.internalDate ?? undefined, maxTextBytes: this.#maxTextBytes });
    const reason = parsed.parseError ? (/longer than/.test(parsed.parseError) ? 'parse_timeout' : 'parse_failed') : null;
    return this.#store(rec, parsed, null, ctx, reason);
  }

  async #store(rec: HeaderRecord, parsed: ParsedMessage, raw: Buffer | null, ctx: IngestContext, reason: QuarantineReason | null): Promise<IngestResult> {
    parsed.text = parsed.text.slice(0, this.#maxTextBytes);
    if (parsed.html) parsed.html = parsed.html.slice(0, this.#maxTextBytes);
    if (parsed.parseError) this.#log.warn({ messageKey: rec.key, uid: rec.uid, reason: parsed.parseError }, 'message stored with a parse problem');
    const result = await this.#threads.ingest({
      key: rec.key, matchKeys: rec.keys, parsed, raw, location: ctx.location,
      userId: ctx.userId, folder: ctx.folder, origin: ctx.origin ?? 'ats', force: ctx.force, candidateIds: ctx.candidateIds,
      quarantine: reason && parsed.parseError ? { reason, detail: parsed.parseError } : undefined, alsoWrite: ctx.alsoWrite,
    });
    if (result.status === 'stored') {
      this.#onStored(rec.keys, ctx, result.reconsider);
      if (reason) this.#onQuarantined(reason);
    }
    return result;
  }

  /** Lists a message whose storing failed; store-level faults (a closed store) are rethrown. */
  async #storeFailed(rec: HeaderRecord, ctx: IngestContext, err: unknown): Promise<void> {
    const e = err as Error & { code?: string };
    if (!this.#quarantine || e.code?.startsWith('LEVEL_')) throw err;
    this.#log.error({ err: { message: e.message, code: e.code }, messageKey: rec.key, uid: rec.uid }, 'storing a message failed; it is quarantined and the sync moves on');
    await this.setAside(rec, ctx, 'store_failed', e.message ?? String(err));
  }

  /** Lists a message that is not stored (it stays in the mailbox), so the sync can move past it. */
  async setAside(rec: HeaderRecord, ctx: IngestContext, reason: QuarantineReason, detail: string): Promise<void> {
    if (!this.#quarantine) return;
    await this.#quarantine.add({
      userId: ctx.userId, folder: ctx.folder, uidValidity: ctx.location?.uidValidity ?? null, uid: ctx.location?.uid ?? null,
      messageKey: rec.key, messageId: rec.ids.messageId, threadId: null, reason, detail, size: rec.size,
    });
    this.#log.warn({ messageKey: rec.key, uid: rec.uid, reason }, 'message set aside in the quarantine');
    this.#onQuarantined(reason);
  }
}

/** A record's header fields, parsed again from its bytes (seldom needed after matching). */
export function headerFields(rec: HeaderRecord): HeaderField[] {
  return parseHeaderBlock(rec.headers);
}

/** What is known of a message that was not fetched: its header fields. */
function headerOnly(rec: HeaderRecord, why: string): ParsedMessage {
  const fields = headerFields(rec);
  const summary = headerSummary(fields, rec.internalDate ?? undefined);
  return {
    headers: fields, ids: rec.ids, ...summary, text: '', html: null, snippet: '', attachments: [],
    autoReply: detectAutoReply(fields, summary.subject).autoReply, size: rec.size, parseError: why,
  };
}
