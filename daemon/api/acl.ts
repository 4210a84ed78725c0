import type { Role, ThreadRecord } from '../store/records.js';

/**
 * Who may see what. Every read path asks here. A secret thread is visible to the user who
 * made it secret, to its participants (any of their addresses in From/To/Cc of any of its
 * messages), to admins and super admins; to everyone else it does not exist (404, absent
 * from lists and counts). Requests without an acting user are the ATS itself acting for no
 * person: they see no secret thread.
 */

export interface Actor {
  userId: string | null;
  role: Role;
  /** Normalised addresses of the acting user (email and aliases). */
  addresses: ReadonlySet<string>;
}

export const SYSTEM_ACTOR: Actor = { userId: null, role: 'user', addresses: new Set() };

export function isAdmin(actor: Actor): boolean {
  return actor.role === 'admin' || actor.role === 'super_admin';
}

export function canSeeThread(actor: Actor, thread: Pick<ThreadRecord, 'secret' | 'secretBy' | 'participants'>, normalise: (a: string) => string): boolean {
  if (!thread.secret) return true;
  if (isAdmin(actor)) return true;
  if (actor.userId !== null && actor.userId === thread.secretBy) return true;
  return thread.participants.some((p) => actor.addresses.has(normalise(p)));
}

/** Unsetting secrecy: only the one who set it, admins and super admins. */
export function canUnsetSecret(actor: Actor, thread: Pick<ThreadRecord, 'secretBy'>): boolean {
  return isAdmin(actor) || (actor.userId !== null && actor.userId === thread.secretBy);
}

/** Consent and imports: only the mailbox owner. */
export function isSelf(actor: Actor, userId: string): boolean {
  return actor.userId === userId;
}

/** Revocation: the owner or a super admin. */
export function canRevoke(actor: Actor, userId: string): boolean {
  return isSelf(actor, userId) || actor.role === 'super_admin';
}

/** Mailbox status: the owner, admins, or the ATS itself. */
export function canReadMailbox(actor: Actor, userId: string): boolean {
  return actor.userId === null || isSelf(actor, userId) || isAdmin(actor);
}
