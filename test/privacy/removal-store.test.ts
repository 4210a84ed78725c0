import t from 'tap';
import type { Test } from 'tap';
import { buildMessage } from '../helpers/dovecot.js';
import { openStack } from '../helpers/stack.js';
import { Removals } from '../../daemon/store/removals.js';
import { invertTime } from '../../daemon/store/keys.js';
import { normaliseAddress } from '../../daemon/threads/addresses.js';

/**
 * The candidate's place of a thread in their list when the thread changes after a removal,
 * through the real store and ingest code: mail arriving late (older than the removed message)
 * and two threads merged by a message that answers both. The list is ordered by the newest
 * message still on the profile, and the profile's summary agrees with the order.
 */

const CAND = 'lee.store@example.org';
const ME = 'robin@example.com';
const day = (n: number) => new Date(Date.UTC(2025, 2, n, 9));

async function world(t: Test) {
  const stack = await openStack(t);
  const { store, accounts, threads, ingestor } = stack;
  await store.exclusive(async () => {
    const batch = store.batch();
    await accounts.putCandidateInBatch(batch, 'c1', { emails: [CAND], name: null });
    await batch.write();
  });
  const removals = new Removals(store, threads, accounts, (a) => normaliseAddress(a));
  let uid = 0;
  const arrive = async (id: string, n: number, from: string, to: string, refs: string[] = []) => {
    const raw = Buffer.from(buildMessage({ from, to, subject: 'Interview', messageId: `<${id}>`, date: day(n), text: `Text ${id}`, ...(refs.length ? { inReplyTo: refs.at(-1), references: refs } : {}) }));
    const rec = ingestor.headerRecord(++uid, raw, raw.length, null, `u1\nINBOX\n1\n${uid}`);
    const res = await ingestor.ingest(rec, raw, true, { userId: 'u1', folder: 'INBOX', location: { userId: 'u1', folder: 'INBOX', uidValidity: '1', uid } });
    if (res.status !== 'stored') throw new Error(`${id}: ${res.status}`);
    return { key: res.key, threadId: res.threadId };
  };
  const remove = (key: string) => removals.remove('c1', key, { visible: () => true, by: null });
  const page = () => threads.candidateThreadPage('c1', undefined, 50);
  /** The list as the profile shows it: thread id, when it sorts, the summary's count and newest date. */
  const shown = async () => Promise.all((await page()).map(async ({ cursor, thread }) => {
    const view = (await removals.profile('c1', thread)).thread;
    return { id: thread.id, sortsAt: cursor.slice(0, 13), messageCount: view.messageCount, lastMessageAt: view.lastMessageAt };
  }));
  return { ...stack, removals, arrive, remove, shown };
}

t.test('mail arriving late, older than the removed message', async (t) => {
  const w = await world(t);
  const o = await w.arrive('o@ats.example.net', 1, ME, CAND);
  const m3 = await w.arrive('m3@example.org', 3, CAND, ME, ['<o@ats.example.net>']);
  t.same((await w.remove(m3.key)).status, 'removed');
  t.same(await w.shown(), [{ id: o.threadId, sortsAt: invertTime(day(1).toISOString()), messageCount: 1, lastMessageAt: day(1).toISOString() }]);
  // a reply of day 2 the sync finds only now (another folder, a slow server)
  await w.arrive('m2@example.org', 2, CAND, ME, ['<o@ats.example.net>']);
  t.same(await w.shown(), [{ id: o.threadId, sortsAt: invertTime(day(2).toISOString()), messageCount: 2, lastMessageAt: day(2).toISOString() }],
    'sorted and summarised by the late reply, not by the removed one of day 3');
  t.equal((await w.threads.getThread(o.threadId))!.messageCount, 3, 'the thread as stored holds all three');
});

t.test('two threads merged by a message that answers both', async (t) => {
  const w = await world(t);
  const x = await w.arrive('x@ats.example.net', 1, ME, CAND);
  const y = await w.arrive('y@ats.example.net', 4, ME, CAND);
  t.not(x.threadId, y.threadId);
  t.same(await w.remove(y.key), { status: 'removed', threadId: y.threadId, unlinked: true }, 'y was all of its thread: unlinked');
  t.same((await w.shown()).map((s) => s.id), [x.threadId]);
  // the candidate answers both at once: one conversation now
  const z = await w.arrive('z@example.org', 3, CAND, ME, ['<x@ats.example.net>', '<y@ats.example.net>']);
  const merged = (await w.threads.getThread(z.threadId))!;
  t.equal(merged.messageCount, 3);
  t.same(merged.candidateIds, ['c1']);
  t.same(await w.shown(), [{ id: z.threadId, sortsAt: invertTime(day(3).toISOString()), messageCount: 2, lastMessageAt: day(3).toISOString() }],
    'y (day 4) stays off the profile after the merge, and says nothing in the summary or the order');
  const view = await w.removals.profile('c1', merged);
  t.same([...view.removed], [y.key]);
  t.same(await w.remove(z.key), { status: 'removed', threadId: z.threadId, unlinked: false });
  t.same((await w.shown()).map((s) => [s.sortsAt, s.messageCount]), [[invertTime(day(1).toISOString()), 1]], 'back to x alone');
  t.same(await w.remove(x.key), { status: 'removed', threadId: z.threadId, unlinked: true });
  t.same(await w.shown(), []);
  t.same(await w.remove(x.key), { status: 'already', threadId: z.threadId });
  t.same(await w.removals.remove('c1', 'm_nosuchmessage', { visible: () => true, by: null }), { status: 'not_found', what: 'message' });
  t.same(await w.removals.remove('c9', x.key, { visible: () => true, by: null }), { status: 'not_found', what: 'candidate' });
});

t.test('a candidate without removals: the profile is the thread as stored', async (t) => {
  const w = await world(t);
  const o = await w.arrive('p@ats.example.net', 1, ME, CAND);
  const thread = (await w.threads.getThread(o.threadId))!;
  const view = await w.removals.profile('c1', thread);
  t.equal(view.thread, thread, 'the very record: nothing computed');
  t.equal(view.removed.size, 0);
  t.notOk(await w.store.has('tombc!c1'), 'no tombstone marker');
});
