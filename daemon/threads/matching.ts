import { allNormalisedIds, idDomain, normaliseId, type IdHeaders } from './message-ids.js';

/**
 * Which messages belong to a tracked thread. A thread is a connected component over
 * Message-ID, In-Reply-To and References (what Dovecot's THREAD REFS and the corpus oracle
 * compute), plus Outlook's Thread-Index root for replies that carry nothing else (B09).
 * Subjects never join threads (B46). A component is tracked when any of its ids is
 * ATS-originated or already belongs to a tracked thread — so the answer does not depend on
 * the order the messages arrive in.
 */

/** Keys under which a message is found: normalised ids, and `tix:` + Thread-Index root. */
export function matchKeys(ids: IdHeaders): string[] {
  const keys = allNormalisedIds(ids);
  if (ids.threadIndexRoot) keys.push(`tix:${ids.threadIndexRoot}`);
  return keys;
}

/** The keys that name the message itself (replies found earlier may point at them). */
export function ownMatchKeys(ids: IdHeaders): string[] {
  const own = [ids.messageId, ...ids.messageIdAlternatives, ...ids.aliases].filter((v): v is string => !!v).map(normaliseId);
  if (ids.threadIndexRoot) own.push(`tix:${ids.threadIndexRoot}`);
  return [...new Set(own)];
}

/** True when the id's domain is one of the ATS domains or a subdomain of one. */
export function isAtsDomainId(normId: string, domains: readonly string[]): boolean {
  if (normId.startsWith('tix:')) return false;
  const d = idDomain(normId);
  if (!d) return false;
  return domains.some((ats) => d === ats || d.endsWith(`.${ats}`));
}

/**
 * Union-find over match keys, for a batch of messages seen together (an initial sync, a
 * catch-up): tracked components are found in one pass whatever the order.
 */
export class IdUnion {
  readonly #parent = new Map<string, string>();

  #find(k: string): string {
    let root = k;
    while (this.#parent.get(root) !== root) {
      const p = this.#parent.get(root);
      if (p === undefined) {
        this.#parent.set(root, root);
        return root;
      }
      root = p;
    }
    // path compression
    let cur = k;
    while (cur !== root) {
      const next = this.#parent.get(cur)!;
      this.#parent.set(cur, root);
      cur = next;
    }
    return root;
  }

  add(keys: string[]): void {
    if (keys.length === 0) return;
    const first = this.#find(keys[0]!);
    for (const k of keys.slice(1)) {
      const r = this.#find(k);
      if (r !== first) this.#parent.set(r, first);
    }
  }

  root(key: string): string {
    return this.#find(key);
  }

  keys(): IterableIterator<string> {
    return this.#parent.keys();
  }
}

/**
 * Given every message of a batch (its match keys) and a test for keys that are tracked on
 * their own (ATS domain, declared outbound, already stored), returns the indexes of the
 * messages that belong to tracked threads.
 */
export function trackedInBatch(batch: string[][], isTrackedKey: (key: string) => boolean): Set<number> {
  return new Set(trackedComponents(batch, isTrackedKey).keys());
}

/**
 * Like `trackedInBatch`, with every key of each tracked message's component: a message stored
 * before its relatives (a reply in INBOX before its parent in Sent) indexes them all, so the
 * relatives join its thread instead of starting another one.
 */
export function trackedComponents(batch: string[][], isTrackedKey: (key: string) => boolean): Map<number, string[]> {
  const union = new IdUnion();
  for (const keys of batch) union.add(keys);
  const members = new Map<string, string[]>();
  for (const k of union.keys()) {
    const root = union.root(k);
    members.set(root, [...(members.get(root) ?? []), k]);
  }
  const trackedRoots = new Set<string>();
  for (const k of union.keys()) if (isTrackedKey(k)) trackedRoots.add(union.root(k));
  const out = new Map<number, string[]>();
  batch.forEach((keys, i) => {
    const root = keys.length ? union.root(keys[0]!) : null;
    if (root !== null && trackedRoots.has(root)) out.set(i, members.get(root)!);
  });
  return out;
}
