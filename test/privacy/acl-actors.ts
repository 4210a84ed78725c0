import { RELATIONS, SEES_SECRET, userIdOf, type Relation } from './acl-world.js';

/**
 * Who asks: every relation to T in every role, the ATS itself (no X-Acting-User), and a role
 * claimed for nobody (X-Acting-Role without X-Acting-User).
 */

export const ROLES = ['user', 'admin', 'super_admin'] as const;
export type Role = (typeof ROLES)[number];

export interface Actor {
  label: string;
  userId: string | null;
  /** Sent as X-Acting-Role; the plain `user` role is left to its default (no header). */
  role: Role | null;
  relation: Relation | null;
  /** X-Acting-Role without X-Acting-User: refused on every path (400 invalid_request). */
  roleWithoutUser: boolean;
}

export const ACTORS: Actor[] = [
  ...RELATIONS.flatMap((relation) => ROLES.map((role): Actor => ({ label: `${relation}/${role}`, userId: userIdOf(relation), role: role === 'user' ? null : role, relation, roleWithoutUser: false }))),
  { label: 'ATS itself (no acting user)', userId: null, role: null, relation: null, roleWithoutUser: false },
  ...ROLES.map((role): Actor => ({ label: `no acting user, X-Acting-Role ${role}`, userId: null, role, relation: null, roleWithoutUser: true })),
];

export const isAdmin = (a: Actor) => a.userId !== null && (a.role === 'admin' || a.role === 'super_admin');
export const isSystem = (a: Actor) => a.userId === null && !a.roleWithoutUser;

/**
 * The rule under test (API.md): a secret thread is visible to the user who made it secret, to
 * its participants (any address of theirs, email or alias, in From/To/Cc of any message), to
 * admins and super admins. The ATS itself acting for no person sees no secret thread.
 */
export function sees(a: Actor, secret: boolean): boolean {
  if (!secret) return true;
  if (a.userId === null) return false;
  return isAdmin(a) || (a.relation !== null && SEES_SECRET.has(a.relation));
}

/** Who may unset secrecy: the one who set it, admins, super admins. */
export const mayUnset = (a: Actor) => isAdmin(a) || a.relation === 'setter';

/** Mailbox status, its quarantine and its imports: the owner, admins, or the ATS itself. */
export const mayReadMailboxOf = (a: Actor, owner: Relation) => isSystem(a) || isAdmin(a) || a.relation === owner;

export function headersOf(a: Actor): { actingUser?: string; role?: string } {
  return { ...(a.userId ? { actingUser: a.userId } : {}), ...(a.role ? { role: a.role } : {}) };
}
