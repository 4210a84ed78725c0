import { K, lastPart } from './keys.js';
import type { Store, WriteBatch } from './store.js';
import type { Role } from './records.js';

/**
 * The audit log: who did what to whose data, for the privacy actions (consent, secrecy,
 * removal, erasure, imports). Each record is written in the same batch as the change it
 * describes, so there is never a change without its record nor a record of a change that did
 * not happen. Records hold ids and flags only — never an address of an erased candidate, a
 * subject, a body or a credential — so they can outlive what they describe.
 */

export type AuditAction =
  | 'consent.granted'
  | 'consent.revoked'
  | 'thread.secret_set'
  | 'thread.secret_unset'
  | 'message.removed'
  | 'candidate.erased'
  | 'import.started';

export interface AuditActor {
  /** X-Acting-User, or null when the ATS acted for no person. */
  userId: string | null;
  role: Role;
  /** Which API token was used: its id (`tok_…`), never the token. */
  client: string;
}

export interface AuditTarget {
  userId?: string;
  candidateId?: string;
  threadId?: string;
  messageKey?: string;
  importId?: string;
}

/** Flags and counts about the change; never content. */
export type AuditDetails = Record<string, string | number | boolean | null>;

export interface AuditEntryInput {
  action: AuditAction;
  actor: AuditActor;
  target: AuditTarget;
  details?: AuditDetails;
}

export interface AuditEntry extends AuditEntryInput {
  id: string;
  at: string;
  /** Position in the log: pass it as `after` to read the entries that follow. */
  cursor: string;
}

export class Audit {
  readonly #store: Store;
  #nextSeq = 1;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Continues the sequence after the last record in the store. */
  async init(): Promise<void> {
    const last = await this.#store.keys(K.auditPrefix(), { reverse: true, limit: 1 });
    this.#nextSeq = last.length ? Number(lastPart(last[0]!)) + 1 : 1;
  }

  /**
   * Adds a record to the batch that makes the change. Call inside `store.exclusive`, so the
   * sequence order is the commit order and a reader paging with `after` never skips one.
   * A batch that fails to write leaves a gap in the sequence, nothing else.
   */
  record(batch: WriteBatch, input: AuditEntryInput): AuditEntry {
    const seq = this.#nextSeq++;
    const entry: AuditEntry = {
      id: `aud_${seq.toString(36).padStart(8, '0')}`,
      at: new Date().toISOString(),
      cursor: String(seq),
      action: input.action,
      actor: { userId: input.actor.userId, role: input.actor.role, client: input.actor.client },
      target: { ...input.target },
      ...(input.details ? { details: { ...input.details } } : {}),
    };
    batch.put(K.audit(seq), entry);
    return entry;
  }

  /** Entries after a cursor (0: from the start), oldest first. */
  async list(after: number, limit: number): Promise<AuditEntry[]> {
    const from = after > 0 ? K.audit(after) : undefined;
    return (await this.#store.entries<AuditEntry>(K.auditPrefix(), { after: from, limit })).map(([, e]) => e);
  }
}
