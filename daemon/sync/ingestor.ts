import type { Logger } from 'pino';
import { parseHeaderBlock, firstHeader, type HeaderField } from '../threads/headers.js';
import { extractIdHeaders, normaliseId, type IdHeaders } from '../threads/message-ids.js';
import { matchKeys, trackedComponents } from '../threads/matching.js';
import { parseMessage } from '../mail/parse.js';
import { messageKey, type IngestResult, type Location, type Threads } from '../store/threads.js';
import type { ThreadOrigin } from '../store/records.js';

/**
 * From header fields to stored threads, independent of where the mail came from (IMAP
 * folder, SMTP intake). Header fields decide; the full source is parsed only for messages
 * that belong to a tracked thread.
 */

export interface HeaderRecord {
  uid: number;
  size: number;
  internalDate: Date | null;
  fields: HeaderField[];
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
}

export interface FetchedSource {
  source: Buffer;
  /** False when only the first bytes were read (the message is larger than the cap). */
  complete: boolean;
}

export interface BatchOptions {
  /** Where each record was seen. */
  context: (rec: HeaderRecord) => IngestContext;
  /** Full sources of some records, by UID; a record left out is "not fetchable yet". */
  fetchSources: (recs: HeaderRecord[]) => Promise<Map<number, FetchedSource>>;
  /** Remember untracked records (keyed id hashes) so a parent arriving later finds them. */
  rememberUntracked: boolean;
  pendingTtlMs: number;
  /** After each chunk: the highest UID handled and the first UID that could not be fetched. */
  onChunk?: (lastUid: number, missingUid: number | null) => Promise<void>;
  chunkSize?: number;
}

export type OnStored = (keys: string[], ctx: IngestContext, reconsider: Location[]) => void;

export class Ingestor {
  readonly #threads: Threads;
  readonly #log: Logger;
  readonly #parseTimeoutMs: number;
  /**
   * Called for every newly stored message with its match keys and the untracked mail that
   * pointed at it (queued durably in the same batch, to be looked at again).
   */
  readonly #onStored: OnStored;

  constructor(threads: Threads, log: Logger, opts: { parseTimeoutMs: number; onStored?: OnStored }) {
    this.#threads = threads;
    this.#log = log;
    this.#parseTimeoutMs = opts.parseTimeoutMs;
    this.#onStored = opts.onStored ?? (() => {});
  }

  /**
   * Parses fetched header fields into what matching needs. `locationKey` keys id-less mail (B02);
   * a provider message id (Gmail) keys it better, as it stays the same across folders. A provider
   * thread id joins the match keys: Gmail's conversation is extra evidence of one thread.
   */
  headerRecord(uid: number, headers: Buffer, size: number, internalDate: Date | null, locationKey: string, provider: { emailId: string | null; threadKey: string | null } = { emailId: null, threadKey: null }): HeaderRecord {
    const fields = parseHeaderBlock(headers);
    const ids = extractIdHeaders(fields);
    const keys = matchKeys(ids);
    if (provider.threadKey) keys.push(provider.threadKey);
    return {
      uid, size, internalDate, fields, ids, keys, emailId: provider.emailId,
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
      for (const { rec, tracked: isTracked } of part) {
        const ctx = opts.context(rec);
        if (!isTracked) {
          // mail older than the pending window waits for no late parent
          const recent = !rec.internalDate || Date.now() - rec.internalDate.getTime() < opts.pendingTtlMs;
          if (opts.rememberUntracked && ctx.location && rec.keys.length && recent) await this.#threads.rememberPending(rec.keys, ctx.location, opts.pendingTtlMs);
          continue;
        }
        if (!ctx.location || !(await this.#threads.addSighting(rec.key, ctx.location))) need.push(rec);
      }
      const sources = need.length ? await opts.fetchSources(need) : new Map<number, FetchedSource>();
      let missingUid: number | null = null;
      for (const rec of need) {
        const got = sources.get(rec.uid);
        if (!got) {
          missingUid ??= rec.uid;
          continue;
        }
        // the batch decided it is tracked (a parent may be in a folder stored after this one):
        // storing must not ask again with less knowledge than the decision had, and indexes the
        // whole component so the relatives stored later join this thread
        const keys = rec.componentKeys ? [...new Set([...rec.keys, ...rec.componentKeys])] : rec.keys;
        const result = await this.ingest({ ...rec, keys }, got.source, got.complete, { ...opts.context(rec), force: true });
        if (result.status === 'stored') stored++;
      }
      await opts.onChunk?.(part[part.length - 1]!.rec.uid, missingUid);
      if (missingUid !== null) return { stored, missingUid };
    }
    return { stored, missingUid: null };
  }

  /** Parses and stores one message. Never throws for bad mail: it is stored with the reason. */
  async ingest(rec: HeaderRecord, source: Buffer, complete: boolean, ctx: IngestContext): Promise<IngestResult> {
    const parsed = await parseMessage(source, { timeoutMs: this.#parseTimeoutMs, fallbackDate: rec.internalDate ?? undefined });
    if (!complete) parsed.parseError = `only the first ${source.length} of ${rec.size} bytes were read (larger than store.maxRawBytes)`;
    if (parsed.parseError) this.#log.warn({ messageKey: rec.key, uid: rec.uid, reason: parsed.parseError }, 'message stored with a parse problem');
    const result = await this.#threads.ingest({
      key: rec.key, matchKeys: rec.keys, parsed, raw: complete ? source : null, location: ctx.location,
      userId: ctx.userId, folder: ctx.folder, origin: ctx.origin ?? 'ats', force: ctx.force, candidateIds: ctx.candidateIds,
    });
    if (result.status === 'stored') this.#onStored(rec.keys, ctx, result.reconsider);
    return result;
  }
}
