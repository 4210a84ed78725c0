import t from 'tap';
import fc from 'fast-check';
import { conversation } from '../fixtures/cases.js';
import { openStack } from '../helpers/stack.js';
import type { HeaderRecord } from '../../daemon/sync/ingestor.js';
import type { Location } from '../../daemon/store/threads.js';
import type { Test } from 'tap';

/**
 * Thread assembly through the real store and ingestion code, with messages arriving one at
 * a time in every order (live sync), and all at once (initial sync). Whatever the order, the
 * ATS conversation ends up as one thread and the look-alikes are never stored.
 */

const convo = conversation();
const uidOf = new Map(convo.map((m, i) => [m.name, i + 1]));

async function arriveLive(t: Test, order: number[]) {
  const pending: Location[][] = [];
  const stack = await openStack(t, { onStored: (_keys, _ctx, reconsider) => pending.push(reconsider) });
  const { ingestor, threads } = stack;
  const mailbox = new Map<number, Buffer>();
  const record = (uid: number): HeaderRecord => ingestor.headerRecord(uid, mailbox.get(uid)!, mailbox.get(uid)!.length, null, `u1\nINBOX\n1\n${uid}`);
  const offer = async (uids: number[], remember: boolean) => {
    const recs = uids.map(record);
    const tracked = await ingestor.decide(recs);
    await ingestor.processBatch(recs, tracked, {
      context: (rec) => ({ userId: 'u1', folder: 'INBOX', location: { userId: 'u1', folder: 'INBOX', uidValidity: '1', uid: rec.uid } }),
      fetchSources: async (rs) => new Map(rs.map((r) => [r.uid, { source: mailbox.get(r.uid)!, complete: true }])),
      rememberUntracked: remember,
      pendingTtlMs: 60_000,
    });
    // what the account worker does after a store: look again at untracked mail that pointed at it
    while (pending.length) {
      const locs = pending.shift()!;
      if (locs.length) await offer(locs.map((l) => l.uid), false);
      await threads.finishReconsider(locs);
    }
  };
  for (const i of order) {
    const m = convo[i]!;
    mailbox.set(uidOf.get(m.name)!, Buffer.from(m.raw));
    await offer([uidOf.get(m.name)!], true);
  }
  return stack;
}

async function assertGrouping(t: Test, stack: Awaited<ReturnType<typeof openStack>>) {
  const threadIds = new Set<string>();
  for (const m of convo) {
    const key = (await stack.store.get<string>(`loc!u1!INBOX!1!${String(uidOf.get(m.name)).padStart(10, '0')}`));
    if (m.thread === 'ats') {
      t.ok(key, `${m.name} is stored`);
      const msg = key ? await stack.threads.getMessage(key) : undefined;
      if (msg) threadIds.add(msg.threadId);
    } else {
      t.notOk(key, `${m.name} (same subject, unrelated) is not stored`);
    }
  }
  t.equal(threadIds.size, 1, 'the ATS conversation is one thread');
  const thread = await stack.threads.getThread([...threadIds][0]!);
  t.equal(thread?.messageCount, convo.filter((m) => m.thread === 'ats').length, 'with every message counted once');
}

t.test('every arrival order gives the same threads (live sync)', async (t) => {
  const seen = new Set<string>();
  await fc.assert(
    fc.asyncProperty(fc.shuffledSubarray([...convo.keys()], { minLength: convo.length, maxLength: convo.length }), async (order) => {
      seen.add(order.join(','));
      await t.test(`order ${order.map((i) => convo[i]!.name).join(' → ')}`, async (t) => assertGrouping(t, await arriveLive(t, order)));
    }),
    { numRuns: 25, seed: 42 },
  );
  // the orders that matter most, always: children before parents, and the natural order
  for (const order of [[...convo.keys()].reverse(), [...convo.keys()]]) {
    await t.test(`order ${order.map((i) => convo[i]!.name).join(' → ')}`, async (t) => assertGrouping(t, await arriveLive(t, order)));
  }
});

t.test('all at once (initial sync) gives the same threads', async (t) => {
  const stack = await openStack(t);
  const recs = convo.map((m, i) => stack.ingestor.headerRecord(i + 1, Buffer.from(m.raw), m.raw.length, null, `u1\nINBOX\n1\n${i + 1}`));
  const tracked = await stack.ingestor.decide(recs.slice().reverse());
  t.equal(tracked.size, convo.filter((m) => m.thread === 'ats').length, 'tracked count does not depend on order');
  const tracked2 = await stack.ingestor.decide(recs);
  await stack.ingestor.processBatch(recs, tracked2, {
    context: (rec) => ({ userId: 'u1', folder: 'INBOX', location: { userId: 'u1', folder: 'INBOX', uidValidity: '1', uid: rec.uid } }),
    fetchSources: async (rs) => new Map(rs.map((r) => [r.uid, { source: Buffer.from(convo[r.uid - 1]!.raw), complete: true }])),
    rememberUntracked: false,
    pendingTtlMs: 0,
  });
  await assertGrouping(t, stack);
});

t.test('a message linking two tracked threads merges them', async (t) => {
  const stack = await openStack(t);
  const mk = (uid: number, raw: string) => stack.ingestor.headerRecord(uid, Buffer.from(raw), raw.length, null, `k${uid}`);
  const ingestOne = async (rec: HeaderRecord, raw: string) => stack.ingestor.ingest(rec, Buffer.from(raw), true, { userId: 'u1', folder: 'INBOX', location: { userId: 'u1', folder: 'INBOX', uidValidity: '1', uid: rec.uid } });
  const a = 'From: r@example.com\r\nMessage-ID: <a@ats.example.net>\r\nSubject: A\r\nDate: Tue, 04 Mar 2025 10:00:00 +0000\r\n\r\nA\r\n';
  const b = 'From: r@example.com\r\nMessage-ID: <b@ats.example.net>\r\nSubject: B\r\nDate: Tue, 04 Mar 2025 11:00:00 +0000\r\n\r\nB\r\n';
  const c = 'From: p@example.org\r\nMessage-ID: <c@example.org>\r\nReferences: <a@ats.example.net> <b@ats.example.net>\r\nSubject: Re: A\r\nDate: Tue, 04 Mar 2025 12:00:00 +0000\r\n\r\nC\r\n';
  const ra = await ingestOne(mk(1, a), a);
  const rb = await ingestOne(mk(2, b), b);
  t.ok(ra.status === 'stored' && rb.status === 'stored' && ra.threadId !== rb.threadId, 'two threads at first');
  const rc = await ingestOne(mk(3, c), c);
  t.equal(rc.status, 'stored');
  const survivor = rc.status === 'stored' ? rc.threadId : '';
  const messages = await stack.threads.threadMessages(survivor);
  t.same(messages.map((m) => m.subject), ['A', 'B', 'Re: A'], 'all three messages in one thread, in date order');
  const gone = ra.status === 'stored' && rb.status === 'stored' ? [ra.threadId, rb.threadId].find((id) => id !== survivor) : undefined;
  t.notOk(gone && (await stack.threads.getThread(gone)), 'the other thread is gone');
  const again = await stack.threads.lookup(['a@ats.example.net', 'b@ats.example.net']);
  t.same([...new Set(again.values())], [survivor], 'every id now points at the surviving thread');
});
