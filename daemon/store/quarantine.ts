import crypto from 'node:crypto';
import { K } from './keys.js';
import type { Store, WriteBatch } from './store.js';

/**
 * Mail that could not be taken in as it should: kept with the reason, never dropped
 * silently. A message that is only partly readable (a MIME fault, a parser timeout, larger
 * than the caps) is still stored in its thread with what could be read, and listed here so
 * an operator sees it; a message that could not be stored at all is listed with where it
 * sits in the mailbox. A quarantined message never stops its folder: the sync moves on.
 */

export const QUARANTINE_REASONS = {
  parse_failed: 'The MIME structure could not be read; the message is kept with its header fields and raw text.',
  parse_timeout: 'Parsing took longer than sync.parseTimeoutMs; the message is kept with its header fields and raw text.',
  too_large: 'The message is larger than sync.maxMessageBytes; only its header fields were read.',
  store_failed: 'Storing the message failed; it stays in the mailbox and is listed here.',
  unfetchable: 'The server announced the message but never delivered its content.',
} as const;

export type QuarantineReason = keyof typeof QUARANTINE_REASONS;

export interface QuarantineRecord {
  id: string;
  userId: string;
  folder: string | null;
  uidValidity: string | null;
  uid: number | null;
  messageKey: string;
  messageId: string | null;
  /** The thread the message was stored in (with what could be read), or null when it was not stored. */
  threadId: string | null;
  reason: QuarantineReason;
  /** What went wrong, for a person (no message content). */
  detail: string;
  size: number;
  at: string;
}

export type QuarantineInput = Omit<QuarantineRecord, 'id' | 'at'>;

/** Stable per mailbox and message: quarantining the same message again replaces its entry. */
export function quarantineId(userId: string, messageKey: string): string {
  return `q_${crypto.createHash('sha256').update(`${userId}\n${messageKey}`).digest('base64url').slice(0, 22)}`;
}

export function quarantineRecord(input: QuarantineInput): QuarantineRecord {
  return { ...input, id: quarantineId(input.userId, input.messageKey), detail: input.detail.slice(0, 500), at: new Date().toISOString() };
}

export class Quarantine {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Adds an entry to a batch (the one that stores the message, when it is stored). */
  put(batch: WriteBatch, record: QuarantineRecord): void {
    batch.put(K.quarantine(record.userId, record.id), record);
  }

  async add(input: QuarantineInput): Promise<QuarantineRecord> {
    const record = quarantineRecord(input);
    const batch = this.#store.batch();
    this.put(batch, record);
    await batch.write();
    return record;
  }

  /** Entries of one mailbox, or of all, in key order from a cursor. */
  async list(opts: { userId?: string; after?: string; limit: number }): Promise<Array<{ cursor: string; record: QuarantineRecord }>> {
    const prefix = opts.userId ? K.quarantineUserPrefix(opts.userId) : K.quarantinePrefix();
    const entries = await this.#store.entries<QuarantineRecord>(prefix, { after: opts.after ? prefix + opts.after : undefined, limit: opts.limit });
    return entries.map(([key, record]) => ({ cursor: key.slice(prefix.length), record }));
  }

  async count(userId: string): Promise<number> {
    return (await this.#store.keys(K.quarantineUserPrefix(userId))).length;
  }

  get(userId: string, id: string): Promise<QuarantineRecord | undefined> {
    return this.#store.get<QuarantineRecord>(K.quarantine(userId, id));
  }
}
