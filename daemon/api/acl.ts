import { ApiError } from '../errors.js';
import type { Role, StoredMessage, ThreadRecord } from '../store/records.js';

/**
 * Who may see what. Every read path asks here.
 *
 * A secret thread is visible to the user who made it secret, to its participants (any of their
 * addresses, email or alias, in From/To/Cc of any of its messages), to admins and super admins.
 * To everyone else it does not exist: 404 on direct reads (the very answer a missing id gets),
 * absent from lists, pages and counts.
 *
 * A request without X-Acting-User is the ATS itself acting for no person. It sees no secret
 * thread on the read paths (fail closed: a page the ATS renders for a person without naming
 * them shows nothing secret); it learns of secret threads through webhooks and the change feed,
 * which say `secret: true`, and reads them as an admin when it means to. A role without a user
 * is refused (a role belongs to a person), so "admin" cannot be claimed for nobody.
 *
 * The decisions are pure functions; `ThreadAccess` applies them to stored records.
 */

export interface Actor {
  userId: string | null;
  role: Role;
  /** Normalised addresses of the acting user (email and aliases). */
  addresses: ReadonlySet<string>;
}

export const SYSTEM_ACTOR: Actor = { userId: null, role: 'user', addresses: new Set() };

export function isAdmin(actor: Actor): boolean {
  return actor.userId !== null && (actor.role === 'admin' || actor.role === 'super_admin');
}

export type SecrecyFields = Pick<ThreadRecord, 'secret' | 'secretBy' | 'participants'>;

export function canSeeThread(actor: Actor, thread: SecrecyFields, normalise: (a: string) => string): boolean {
  if (!thread.secret) return true;
  if (actor.userId === null) return false;
  if (isAdmin(actor)) return true;
  if (actor.userId === thread.secretBy) return true;
  return thread.participants.some((p) => actor.addresses.has(normalise(p)));
}

/** Unsetting secrecy: only the one who set it, admins and super admins. */
export function canUnsetSecret(actor: Actor, thread: Pick<ThreadRecord, 'secretBy'>): boolean {
  return isAdmin(actor) || (actor.userId !== null && actor.userId === thread.secretBy);
}

/** Consent and imports: only the mailbox owner. */
export function isSelf(actor: Pick<Actor, 'userId'>, userId: string): boolean {
  return actor.userId === userId;
}

/** Revocation: the owner or a super admin. */
export function canRevoke(actor: Actor, userId: string): boolean {
  return isSelf(actor, userId) || (actor.userId !== null && actor.role === 'super_admin');
}

/** Mailbox status, its quarantine and its imports: the owner, admins, or the ATS itself. */
export function canReadMailbox(actor: Actor, userId: string): boolean {
  return actor.userId === null || isSelf(actor, userId) || isAdmin(actor);
}

/**
 * The ATS's own channels (the change feed, operator endpoints): everything in them, secret
 * threads included (marked `secret: true`), for the ATS itself and admins; not for a person.
 */
export function assertSystemChannel(actor: Actor, what: string): void {
  if (actor.userId === null || isAdmin(actor)) return;
  throw new ApiError('forbidden', `${what} is for the ATS itself and admins, not for a user (call it without X-Acting-User, or as an admin).`);
}

/** The reads `ThreadAccess` needs from the store. */
export interface ThreadReader {
  getThread(id: string): Promise<ThreadRecord | undefined>;
  getMessage(key: string): Promise<StoredMessage | undefined>;
}

/** A thread as some record remembers it: its id then, and a message of it to find it after a merge. */
export interface ThreadRef {
  threadId: string | null;
  messageKey?: string | null;
}

/** The ACL applied to stored records: the one way routes read threads and messages for an actor. */
export class ThreadAccess {
  readonly #reader: ThreadReader;
  readonly #normalise: (a: string) => string;

  constructor(reader: ThreadReader, normalise: (a: string) => string) {
    this.#reader = reader;
    this.#normalise = normalise;
  }

  canSee(actor: Actor, thread: SecrecyFields): boolean {
    return canSeeThread(actor, thread, this.#normalise);
  }

  /** The thread, or a 404 that reads exactly as for a thread that does not exist. */
  async thread(actor: Actor, id: string): Promise<ThreadRecord> {
    const t = await this.#reader.getThread(id);
    if (!t || !this.canSee(actor, t)) throw new ApiError('not_found', `No thread ${id}.`);
    return t;
  }

  /** The message with its thread, or a 404 that reads exactly as for a message that does not exist. */
  async message(actor: Actor, key: string): Promise<{ message: StoredMessage; thread: ThreadRecord }> {
    const message = await this.#reader.getMessage(key);
    const thread = message && (await this.#reader.getThread(message.threadId));
    if (!message || !thread || !this.canSee(actor, thread)) throw new ApiError('not_found', `No message ${key}.`);
    return { message, thread };
  }

  /**
   * Whether the thread a record points at is hidden from the actor. The record's thread may
   * have been merged into another since: its message says where it is now. A thread that is
   * gone with no message to follow is not hidden (nothing of it is left to show).
   */
  async hides(actor: Actor, ref: ThreadRef): Promise<boolean> {
    if (ref.threadId === null && !ref.messageKey) return false;
    let thread = ref.threadId ? await this.#reader.getThread(ref.threadId) : undefined;
    if (!thread && ref.messageKey) {
      const m = await this.#reader.getMessage(ref.messageKey);
      thread = m && (await this.#reader.getThread(m.threadId));
    }
    return !!thread && !this.canSee(actor, thread);
  }
}
