import crypto from 'node:crypto';
import t, { type Test } from 'tap';
import { buildMessage } from '../helpers/dovecot.js';
import { openStack } from '../helpers/stack.js';
import { findAnyCaseInStoreFiles, foundAnywhere } from '../helpers/store-files.js';
import { Audit } from '../../daemon/store/audit.js';
import { CandidateErasure } from '../../daemon/store/erasure.js';
import { K } from '../../daemon/store/keys.js';
import type { EventRecord, ImportRecord } from '../../daemon/store/records.js';
import { normaliseAddress } from '../../daemon/threads/addresses.js';

/**
 * The erasure's decisions on the real store, case by case: what is deleted, what a shared
 * thread keeps, that an address an ATS user shares with the candidate is never forgotten, how
 * events are rewritten (also a copy the webhook dispatcher holds), and that the files of a
 * store with several LevelDB levels keep nothing of the candidate.
 */

const actor = { userId: null, role: 'user' as const, client: 'tok_test' };
const letters = (n: number) => Array.from(crypto.randomBytes(n), (b) => String.fromCharCode(97 + (b % 26))).join('');

async function world(t: Test, opts: { encryptContent?: boolean; push?: boolean } = {}) {
  const stack = await openStack(t, opts);
  const audit = new Audit(stack.store);
  await audit.init();
  const erasure = new CandidateErasure({ store: stack.store, outbox: stack.outbox, accounts: stack.accounts, audit, normalise: (a) => normaliseAddress(a) });
  let uid = 0;
  /** Stores one message as the sync does (in INBOX of u1). */
  const deliver = async (raw: string) => {
    uid++;
    const source = Buffer.from(raw);
    const rec = stack.ingestor.headerRecord(uid, source, source.length, null, `u1\nINBOX\n1\n${uid}`);
    const tracked = await stack.ingestor.decide([rec]);
    if (!tracked.size) throw new Error('not tracked');
    return stack.ingestor.ingest(rec, source, true, { userId: 'u1', folder: 'INBOX', location: { userId: 'u1', folder: 'INBOX', uidValidity: '1', uid }, force: true });
  };
  const candidate = async (cid: string, emails: string[], linkExisting = true) => stack.store.exclusive(async () => {
    const batch = stack.store.batch();
    const { added } = await stack.accounts.putCandidateInBatch(batch, cid, { emails, name: null });
    if (linkExisting) await stack.threads.linkCandidateByAddresses(batch, cid, added);
    await batch.write();
  });
  const events = async () => (await stack.store.entries<EventRecord>(K.eventPrefix())).map(([, e]) => e);
  return { ...stack, audit, erasure, deliver, candidate, events };
}

t.test('what goes and what stays', async (t) => {
  const w = await world(t);
  const r = 'robin@example.com';
  const jo = 'Jo.Erased@Example.org';
  const sam = 'sam@example.org';
  await w.accounts.putUser('u1', { email: r, aliases: [], name: null });
  await w.candidate('cE', [jo]);
  await w.candidate('cS', [sam]);
  const thread = async (name: string, to: string, text: string) => {
    const id = `<${name}-${letters(6)}@ats.example.net>`;
    const first = await w.deliver(buildMessage({ from: r, to, subject: name, messageId: id, text }));
    if (first.status !== 'stored') throw new Error(name);
    return { id: first.threadId, messageId: id, key: first.key };
  };
  const shared = await thread('shared', `${jo}, ${sam}`, 'to both');
  await w.deliver(buildMessage({ from: sam, to: r, subject: 'Re: shared', messageId: `<s-${letters(6)}@example.org>`, inReplyTo: shared.messageId, text: 'from Sam' }));
  const own = await thread('own', jo, 'to Jo only');
  const reply = await w.deliver(buildMessage({ from: jo, to: r, subject: 'Re: own', messageId: `<o-${letters(6)}@example.org>`, inReplyTo: own.messageId, text: 'from Jo' }));
  const samOnly = await thread('sam-only', sam, 'to Sam only');
  const stranger = await thread('stranger', 'someone@example.net', 'to someone else');
  // Jo in a thread no candidate is linked to (a candidate registered without linking old mail)
  await w.candidate('cX', ['xavier@example.org']);
  const unlinked = await thread('unlinked', 'xavier@example.org', 'to Xavier');
  await w.store.exclusive(async () => {
    // Xavier goes away, the thread stays: Jo is then its only known person
    const t1 = (await w.threads.getThread(unlinked.id))!;
    await w.store.batch().put(K.thread(unlinked.id), { ...t1, candidateIds: [], participants: [...t1.participants, jo.toLowerCase()] })
      .put(K.addrThread('jo.erased@example.org', unlinked.id), '').del(K.candThread('cX', unlinked.id)).write();
  });
  const imp = (id: string, candidateId: string): ImportRecord => ({ id, candidateId, userId: 'u1', state: 'done', scanned: 0, total: 0, matched: 0, threadsLinked: 0, imported: 0, error: null, since: null, createdAt: '', startedAt: null, finishedAt: null });
  await w.store.batch().put(K.importJob('imp_e'), imp('imp_e', 'cE')).put(K.importJob('imp_s'), imp('imp_s', 'cS'))
    .put(K.tomb('cE', own.key), { removedAt: '', threadId: own.id, by: null }).put(K.tombCandidate('cE'), '').write();
  const before = await w.events();

  const outcome = await w.erasure.erase('cE', actor);
  t.match(outcome, { candidateId: 'cE', registered: true, threadsDeleted: 2, threadsUnlinked: 1, messagesDeleted: 3 });

  t.notOk(await w.store.has(K.candidate('cE')), 'the candidate record is gone');
  t.notOk(await w.store.has(K.candAddr('jo.erased@example.org', 'cE')), 'and their address index');
  for (const gone of [own, unlinked]) {
    t.notOk(await w.threads.getThread(gone.id), `${gone === own ? 'their own thread' : 'the thread only they were in'} is deleted`);
    t.same(await w.store.keys(K.threadMessagePrefix(gone.id)), [], 'with its message index');
    t.same(await w.store.keys(K.threadMatchKeyPrefix(gone.id)), [], 'its match keys');
    t.notOk(await w.store.has(K.matchKey(gone.messageId.slice(1, -1).toLowerCase())), 'the Message-ID no longer finds it');
  }
  for (const key of [own.key, reply.status === 'stored' ? reply.key : '']) {
    t.notOk(await w.store.has(K.message(key)), `message ${key} is deleted`);
    t.notOk(await w.store.has(K.raw(key)), 'with its original bytes');
  }
  t.same((await w.store.entries<string>(K.locationUserPrefix('u1'))).filter(([, k]) => k === own.key), [], 'the mailbox no longer says where it sat');
  t.same(await w.store.keys(K.addrThreadPrefix('jo.erased@example.org')), [], 'no thread is found by the erased address');
  t.same(await w.store.keys(K.candThreadPrefix('cE')), [], 'no link of the candidate is left');
  t.same(await w.store.keys(K.candActivityPrefix('cE')), [], 'nor their activity index');
  t.same(await w.store.keys(K.tombPrefix('cE')), [], 'their removals are forgotten');
  t.notOk(await w.store.has(K.tombCandidate('cE')));
  t.notOk(await w.store.has(K.importJob('imp_e')), 'their import is deleted');
  t.ok(await w.store.has(K.importJob('imp_s')), 'another candidate\'s stays');

  const s = (await w.threads.getThread(shared.id))!;
  t.same(s.candidateIds, ['cS'], 'the shared thread is Sam\'s alone');
  t.notOk(s.participants.includes('jo.erased@example.org'), 'its participants no longer list the erased address');
  t.ok(s.participants.includes(r) && s.participants.includes(sam), 'the others stay');
  const kept = await w.threads.threadMessages(shared.id);
  t.equal(kept.length, 2, 'its messages stay');
  t.equal(kept[0]!.to.map((a) => a.address).join(', '), `${jo}, ${sam}`, 'exactly as they were written');
  for (const other of [samOnly, stranger]) {
    const th = (await w.threads.getThread(other.id))!;
    t.same(th.participants, other === samOnly ? [r, sam] : [r, 'someone@example.net'], 'a thread without the candidate is untouched');
  }

  const after = await w.events();
  t.same(after.slice(0, before.length).map((e) => [e.id, e.type, e.status]), before.map((e) => [e.id, e.type, e.status]), 'every event keeps its id, type and state');
  for (const e of after.slice(0, before.length)) {
    const was = before.find((b) => b.seq === e.seq)!;
    const aboutOwn = was.data.threadId === own.id || was.data.threadId === unlinked.id;
    if (aboutOwn || (was.type === 'thread.linked' && was.data.candidateId === 'cE')) t.same(e.data, { erased: true }, `${e.type} ${e.id} is erased`);
    else if (was.type === 'message.created' && was.data.threadId === shared.id) t.same(e.data.candidateIds, ['cS'], `${e.id} names Sam only`);
    else t.same(e.data, was.data, `${e.type} ${e.id} is unchanged`);
  }
  const last = after[after.length - 1]!;
  t.same([last.type, last.data, last.id], ['candidate.erased', { candidateId: 'cE' }, outcome.eventId]);
  const [entry] = await w.audit.list(0, 10);
  t.match(entry, { action: 'candidate.erased', target: { candidateId: 'cE' }, details: { threadsDeleted: 2, threadsUnlinked: 1, messagesDeleted: 3 } });
  t.notMatch(JSON.stringify(entry), /jo\.erased/i, 'the audit holds no address');
  t.same((await w.store.keys('')).filter((k) => /jo\.erased/i.test(k)), [], 'no key of the store holds the address');
  t.notOk(await w.store.has(K.purgeOwed()), 'the files were rewritten');

  const again = await w.erasure.erase('cE', actor);
  t.match(again, { registered: false, threadsDeleted: 0, threadsUnlinked: 0, messagesDeleted: 0, eventsRewritten: 0 }, 'erasing again finds nothing and succeeds');
});

t.test('an address the candidate shares with an ATS user is never forgotten from a thread', async (t) => {
  const w = await world(t);
  await w.accounts.putUser('u1', { email: 'robin@example.com', aliases: [], name: null });
  await w.accounts.putUser('u2', { email: 'pat@example.com', aliases: [], name: null });
  await w.candidate('cU', ['pat@example.com']);
  await w.candidate('cS', ['sam@example.org']);
  const id = `<u-${letters(6)}@ats.example.net>`;
  const stored = await w.deliver(buildMessage({ from: 'robin@example.com', to: 'pat@example.com, sam@example.org', subject: 'Panel', messageId: id, text: 'hi' }));
  if (stored.status !== 'stored') throw new Error('not stored');
  t.same((await w.threads.getThread(stored.threadId))!.candidateIds.sort(), ['cS', 'cU']);
  await w.erasure.erase('cU', actor);
  const th = (await w.threads.getThread(stored.threadId))!;
  t.same(th.candidateIds, ['cS'], 'the candidate is unlinked');
  t.ok(th.participants.includes('pat@example.com'), 'the user\'s address stays a participant (who may see a secret thread depends on it)');
  t.same(await w.store.keys(K.addrThreadPrefix('pat@example.com')), [K.addrThread('pat@example.com', th.id)], 'and in the participant index');
  t.same(await w.accounts.usersByAddresses(['pat@example.com']), new Set(['u2']), 'the user keeps it');
  t.same(await w.accounts.candidatesByAddresses(['pat@example.com']), new Set(), 'the candidate does not');
});

t.test('a copy of an event read before the erasure can neither restore nor send the old data', async (t) => {
  const w = await world(t, { push: true });
  await w.candidate('cE', ['jo@example.org']);
  const id = `<c-${letters(6)}@ats.example.net>`;
  const stored = await w.deliver(buildMessage({ from: 'robin@example.com', to: 'jo@example.org', subject: 'Hello', messageId: id, text: 'hi' }));
  if (stored.status !== 'stored') throw new Error('not stored');
  const seq = w.outbox.seqOf(stored.eventId)!;
  const copy = (await w.outbox.getMany([seq]))[0]!; // what the webhook dispatcher holds
  t.match(copy.data, { threadId: stored.threadId });
  await w.erasure.erase('cE', actor);
  t.same(w.outbox.refresh({ ...copy, data: { ...copy.data } }).data, { erased: true }, 'a delivery not yet sent sends the erased form');
  await w.outbox.updateMany([{ ...copy, data: { ...copy.data }, status: 'delivered', attempts: 1 }]);
  const now = (await w.outbox.getMany([seq]))[0]!;
  t.same([now.status, now.data], ['delivered', { erased: true }], 'recording its delivery keeps the data erased');
});

t.test('on a store with several LevelDB levels nothing of the candidate is left in the files', async (t) => {
  const w = await world(t, { encryptContent: false });
  const jo = `jo.${letters(16)}@example.org`;
  const marker = `marker ${letters(24)}`;
  // ~24 MB of other mail before and after, so LevelDB spreads the store over levels and files
  const filler = async (n: number) => {
    for (let i = 0; i < n; i += 500) {
      const batch = w.store.batch();
      for (let j = 0; j < 500; j++) batch.putRaw(K.raw(`m_filler${crypto.randomBytes(8).toString('hex')}`), crypto.randomBytes(1024));
      await batch.write();
    }
  };
  await filler(16_000);
  await w.candidate('cE', [jo]);
  const id = `<big-${letters(6)}@ats.example.net>`;
  await w.deliver(buildMessage({ from: 'robin@example.com', to: jo, subject: 'Offer', messageId: id, text: `Dear Jo, ${marker}` }));
  await w.deliver(buildMessage({ from: jo, to: 'robin@example.com', subject: 'Re: Offer', messageId: `<r-${letters(6)}@example.org>`, inReplyTo: id, text: `Yes. ${marker}` }));
  await filler(8_000);
  const levels = () => [0, 1, 2, 3].map((l) => (w.store.db as unknown as { getProperty(p: string): string }).getProperty(`leveldb.num-files-at-level${l}`)).join('/');
  const needles = { address: jo, marker };
  const before = findAnyCaseInStoreFiles(w.dir, needles);
  t.ok(before.address!.length && before.marker!.length, `before: found in ${[...new Set(Object.values(before).flat())].join(', ')} (files per level ${levels()})`);
  const started = Date.now();
  await w.erasure.erase('cE', actor);
  t.same(foundAnywhere(findAnyCaseInStoreFiles(w.dir, needles)), [], `after: in no file (erasure took ${Date.now() - started} ms; files per level ${levels()})`);
  const sample = (await w.store.keys(K.raw('m_filler'), { limit: 1 }))[0]!;
  t.equal((await w.store.getBytes(sample))?.length, 1024, 'the rest of the store reads as before');
});

t.test('a file rewrite an erasure still owed (a stop or a crash came first) is done on the next start', async (t) => {
  const w = await world(t, { encryptContent: false });
  const marker = `marker ${letters(24)}`;
  await w.store.batch().put(K.message('m_1'), { text: marker }).write();
  // what an erasure's batch leaves when the process ends before the rewrite
  await w.store.batch().del(K.message('m_1')).put(K.purgeOwed(), { since: new Date().toISOString() }).write();
  t.ok(foundAnywhere(findAnyCaseInStoreFiles(w.dir, { marker })).length, 'the deleted text is still in the files');
  t.equal(await w.erasure.start(), true, 'the start finds the rewrite owed and does it');
  t.same(foundAnywhere(findAnyCaseInStoreFiles(w.dir, { marker })), [], 'then it is in no file');
  t.notOk(await w.store.has(K.purgeOwed()), 'and nothing is owed any more');
  t.equal(await w.erasure.start(), false, 'the next start has nothing to do');
});
