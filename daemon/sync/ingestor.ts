import type { Logger } from 'pino';
import { parseHeaderBlock, firstHeader, type HeaderField } from '../threads/headers.js';
import { extractIdHeaders, normaliseId, type IdHeaders } from '../threads/message-ids.js';
import { matchKeys, trackedInBatch } from '../threads/matching.js';
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
}

export interface IngestContext {
  userId: string;
  folder: string;
  location: Location | null;
  origin?: ThreadOrigin;
  force?: boolean;
  candidateIds?: string[];
}

export class Ingestor {
  readonly #threads: Threads;
  readonly #log: Logger;
  readonly #parseTimeoutMs: number;
  /** Called with the match keys of every newly stored message (to find late-arriving relatives). */
  readonly #onStored: (keys: string[], ctx: IngestContext) => void;

  constructor(threads: Threads, log: Logger, opts: { parseTimeoutMs: number; onStored?: (keys: string[], ctx: IngestContext) => void }) {
    this.#threads = threads;
    this.#log = log;
    this.#parseTimeoutMs = opts.parseTimeoutMs;
    this.#onStored = opts.onStored ?? (() => {});
  }

  /** Parses fetched header fields into what matching needs. `locationKey` keys id-less mail (B02). */
  headerRecord(uid: number, headers: Buffer, size: number, internalDate: Date | null, locationKey: string): HeaderRecord {
    const fields = parseHeaderBlock(headers);
    const ids = extractIdHeaders(fields);
    return {
      uid, size, internalDate, fields, ids, keys: matchKeys(ids),
      key: messageKey(ids.messageId ? normaliseId(ids.messageId) : null, firstHeader(fields, 'date'), firstHeader(fields, 'subject'), locationKey),
    };
  }

  /** Indexes (into `records`) of the messages that belong to tracked threads. */
  async decide(records: HeaderRecord[]): Promise<Set<number>> {
    const tracked = await this.#threads.trackedKeys(records.flatMap((r) => r.keys));
    return trackedInBatch(records.map((r) => r.keys), (k) => tracked.has(k));
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
    if (result.status === 'stored') this.#onStored(rec.keys, ctx);
    return result;
  }
}
