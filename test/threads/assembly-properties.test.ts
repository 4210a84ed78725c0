import t from 'tap';
import fc from 'fast-check';
import { trackedComponents, trackedInBatch } from '../../daemon/threads/matching.js';
import { conversationOrder } from '../../daemon/store/threads.js';
import type { Location } from '../../daemon/store/threads.js';
import type { HeaderRecord } from '../../daemon/sync/ingestor.js';
import { openStack } from '../helpers/stack.js';

/**
 * The thread assembler never throws and does not depend on arrival order: generated
 * conversation forests (ATS-rooted and unrelated trees, every reference style) arrive in
 * random orders and random batches through the real store; each ATS conversation ends up as
 * exactly one thread with all its messages, and nothing of the unrelated ones is stored.
 */

const keySet = fc.array(fc.constantFrom('a@ats.example.net', 'b@x.example', 'c@y.example', 'd@z.example', 'e@ats.example.net', 'f@w.example', 'tix:01ab'), { maxLength: 4 });

t.test('tracked components do not depend on the order of the batch', async (t) => {
  fc.assert(
    fc.property(fc.array(keySet, { maxLength: 12 }), fc.infiniteStream(fc.nat()), (batch, seeds) => {
      const isTracked = (k: string) => k.endsWith('@ats.example.net');
      const order = batch.map((_, i) => i).sort((a, b) => (seeds.next().value % 7) - (seeds.next().value % 7) || a - b);
      const direct = trackedInBatch(batch, isTracked);
      const shuffled = trackedInBatch(order.map((i) => batch[i]!), isTracked);
      const back = new Set([...shuffled].map((j) => order[j]!));
      const components = trackedComponents(batch, isTracked);
      return direct.size === back.size && [...direct].every((i) => back.has(i)) && [...components].every(([i, keys]) => batch[i]!.every((k) => keys.includes(k)));
    }),
    { numRuns: 1_000 },
  );
  t.pass('1,000 generated batches');
});

t.test('conversation order is a permutation and never throws', async (t) => {
  const msg = fc.record({
    date: fc.constantFrom('2025-03-04T10:00:00.000Z', '2025-03-04T10:00:01.000Z', '2025-03-04T09:59:59.000Z'),
    messageId: fc.option(fc.constantFrom('<a@x>', '<b@x>', '<c@x>'), { nil: null }),
    inReplyTo: fc.option(fc.constantFrom('<a@x>', '<b@x>', '<c@x>'), { nil: null }),
    references: fc.array(fc.constantFrom('<a@x>', '<b@x>', '<c@x>'), { maxLength: 3 }),
    createdAt: fc.constantFrom('2025-03-04T11:00:00.000Z', '2025-03-04T11:00:01.000Z'),
  });
  fc.assert(
    fc.property(fc.array(msg, { maxLength: 10 }), (msgs) => {
      const out = conversationOrder(msgs);
      return out.length === msgs.length && msgs.every((m) => out.includes(m));
    }),
    { numRuns: 1_000 },
  );
  t.pass('1,000 generated threads');
});

interface Node {
  id: string;
  parent: number | null;
  style: 'irt' | 'refs' | 'both' | 'root-only';
}

/** A forest: each node's parent is an earlier node or none (a new conversation). */
const forest = fc.array(fc.tuple(fc.nat(), fc.boolean(), fc.constantFrom('irt', 'refs', 'both', 'root-only'), fc.boolean()), { minLength: 1, maxLength: 14 }).map((spec) => {
  const nodes: Node[] = [];
  const ats: boolean[] = [];
  spec.forEach(([p, newRoot, style, isAts], i) => {
    const parent = i === 0 || newRoot ? null : p % i;
    const root = parent === null ? i : rootOf(nodes, parent);
    const atsRoot = parent === null ? isAts : ats[root]!;
    ats.push(atsRoot);
    nodes.push({ id: parent === null && atsRoot ? `<n${i}@ats.example.net>` : `<n${i}@mail.example.org>`, parent, style: style as Node['style'] });
  });
  return { nodes, ats };
});

function rootOf(nodes: Node[], i: number): number {
  let r = i;
  while (nodes[r]!.parent !== null) r = nodes[r]!.parent!;
  return r;
}

function raw(nodes: Node[], i: number): Buffer {
  const n = nodes[i]!;
  const chain: string[] = [];
  for (let p = n.parent; p !== null; p = nodes[p]!.parent) chain.unshift(nodes[p]!.id);
  const lines = ['From: a@example.org', 'To: b@example.com', `Subject: ${i % 2 ? 'Re: ' : ''}Interview`, 'Date: Tue, 04 Mar 2025 10:00:00 +0000', `Message-ID: ${n.id}`];
  if (n.parent !== null) {
    if (n.style === 'irt' || n.style === 'both') lines.push(`In-Reply-To: ${nodes[n.parent]!.id}`);
    if (n.style === 'refs' || n.style === 'both') lines.push(`References: ${chain.join(' ')}`);
    if (n.style === 'root-only') lines.push(`References: ${chain[0]}`);
  }
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\nBody ${i}.\r\n`);
}

t.test('generated conversations arriving in random orders and batches: one thread each', async (t) => {
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(forest, fc.infiniteStream(fc.nat()), async ({ nodes, ats }, seeds) => {
      runs++;
      const reconsider: Location[][] = [];
      const stack = await openStack(t, { onStored: (_k, _c, locs) => reconsider.push(locs) });
      const sources = new Map(nodes.map((_, i) => [i + 1, raw(nodes, i)]));
      const rec = (uid: number): HeaderRecord => stack.ingestor.headerRecord(uid, sources.get(uid)!, sources.get(uid)!.length, null, `u1\nINBOX\n1\n${uid}`);
      const offer = async (uids: number[], remember: boolean) => {
        const recs = uids.map(rec);
        const tracked = await stack.ingestor.decide(recs);
        await stack.ingestor.processBatch(recs, tracked, {
          context: (r) => ({ userId: 'u1', folder: 'INBOX', location: { userId: 'u1', folder: 'INBOX', uidValidity: '1', uid: r.uid } }),
          fetchSources: async (rs) => new Map(rs.map((r) => [r.uid, { source: sources.get(r.uid)!, complete: true }])),
          rememberUntracked: remember,
          pendingTtlMs: 60_000,
        });
        while (reconsider.length) {
          const locs = reconsider.shift()!;
          if (locs.length) await offer(locs.map((l) => l.uid), false);
          await stack.threads.finishReconsider(locs);
        }
      };
      // random arrival order, in batches of one to four
      const order = nodes.map((_, i) => i + 1).sort((a, b) => (seeds.next().value % 5) - (seeds.next().value % 5) || a - b);
      while (order.length) await offer(order.splice(0, 1 + (seeds.next().value % 4)), true);

      const threadOfRoot = new Map<number, string>();
      for (let i = 0; i < nodes.length; i++) {
        const key = await stack.store.get<string>(`loc!u1!INBOX!1!${String(i + 1).padStart(10, '0')}`);
        const root = rootOf(nodes, i);
        if (!ats[root]) {
          if (key) return false; // an unrelated conversation was stored
          continue;
        }
        const msg = key ? await stack.threads.getMessage(key) : undefined;
        if (!msg) return false; // an ATS message was lost
        if ((threadOfRoot.get(root) ?? msg.threadId) !== msg.threadId) return false; // split
        threadOfRoot.set(root, msg.threadId);
      }
      return new Set(threadOfRoot.values()).size === threadOfRoot.size; // conversations never merged
    }),
    { numRuns: 40 },
  );
  t.pass(`${runs} generated mailboxes`);
});
