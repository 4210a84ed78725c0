import t from 'tap';
import { openStack } from '../helpers/stack.js';
import { newQueueId, RelayRecords, type AcceptInput } from '../../daemon/store/relay.js';
import { K } from '../../daemon/store/keys.js';

/**
 * The relay's queue records: accepts arriving together are written in shared batches, yet each
 * message gets the thread it would get alone — a fresh id its own thread, a repeated or already
 * declared id the existing one.
 */

const input = (userId: string, messageId: string, candidateIds: string[] = []): AcceptInput => ({
  entry: {
    queueId: newQueueId(), userId, messageId: `<${messageId}>`, from: 'robin@example.com', to: ['casey@example.org'], accepted: [], rejected: [],
    attempts: 0, nextAttemptAt: null, lastError: null, sendingSince: null, size: 10, createdAt: new Date().toISOString(),
  },
  raw: Buffer.from(`Message-ID: <${messageId}>\r\n\r\nhello\r\n`),
  thread: { matchKeys: [messageId], candidateIds, subject: 'Hello' },
  durable: true,
});

t.test('concurrent accepts: fresh ids get their own threads, shared and declared ids join one', async (t) => {
  const { store, outbox, threads } = await openStack(t);
  const records = new RelayRecords(store, outbox, threads);
  const declared = await threads.declareOutbound({ userId: 'u1', matchKeys: ['declared.1@ats.example.net'], candidateIds: ['c9'] });

  const inputs = [
    ...Array.from({ length: 12 }, (_, i) => input('u1', `fresh.${i}@ats.example.net`, [`c${i % 3}`])),
    ...Array.from({ length: 4 }, () => input('u2', 'same.1@ats.example.net', ['c1'])),
    ...Array.from({ length: 3 }, () => input('u3', 'declared.1@ats.example.net')),
  ];
  // interleave them, all at once
  const shuffled = inputs.map((x, i) => [x, (i * 7) % inputs.length] as const).sort((a, b) => a[1] - b[1]).map(([x]) => x);
  const entries = await Promise.all(shuffled.map((x) => records.accept(x)));

  const threadOf = (id: string) => entries.filter((e) => e.messageId === `<${id}>`).map((e) => e.threadId);
  const fresh = Array.from({ length: 12 }, (_, i) => threadOf(`fresh.${i}@ats.example.net`)[0]);
  t.equal(new Set(fresh).size, 12, 'twelve fresh ids, twelve threads');
  t.equal(new Set(threadOf('same.1@ats.example.net')).size, 1, 'four messages with one id: one thread');
  t.same([...new Set(threadOf('declared.1@ats.example.net'))], [declared.id], 'an id declared before joins that thread');
  const joined = await threads.getThread(declared.id);
  t.same([...joined!.ownerUserIds].sort(), ['u1', 'u3'], 'and records its sender');

  t.equal(await records.count(), inputs.length, 'every message is queued');
  const stored = await Promise.all(entries.map((e) => store.get<{ threadId: string }>(K.relay(e.queueId))));
  t.ok(stored.every((s, i) => s?.threadId === entries[i]!.threadId), 'each queue entry names its thread');
  const sameThread = await threads.getThread(threadOf('same.1@ats.example.net')[0]!);
  t.same(sameThread!.candidateIds, ['c1'], 'linked once');
  const linkedEvents = (await outbox.list(0, 1000)).filter((e) => e.type === 'thread.linked');
  t.equal(linkedEvents.length, 1 + 12 + 1, 'one thread.linked per new link, none twice');
  const seqs = linkedEvents.map((e) => e.seq);
  t.same(seqs, [...seqs].sort((a, b) => a - b), 'in commit order');

  await Promise.all(entries.map((e) => records.finish(e, 'message.sent', { queueId: e.queueId })));
  t.equal(await records.count(), 0, 'finishing empties the queue');
  t.equal((await outbox.list(0, 1000)).filter((e) => e.type === 'message.sent').length, inputs.length, 'one message.sent each');
  t.same(await store.keys('rlyraw!'), [], 'and the bytes are gone');
});
