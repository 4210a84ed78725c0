import t from 'tap';
import { appendMessage, buildMessage, createMailbox, dovecotEnv, mailboxSnapshot, seedMaildir } from '../helpers/dovecot.js';
import { startDaemon, waitUntil, type RunningDaemon } from '../helpers/daemon.js';

/**
 * Removing an email from a candidate's profile (DELETE /v1/candidates/{id}/messages/{key}),
 * against mail synced from the real Dovecot: the answers (204, 404 for every missing part and
 * for a thread secret to the actor), what the profile shows afterwards (list order, counts,
 * snippets, cursors, the thread read with ?candidateId), that other profiles and the stored
 * message are untouched, and that no way of linking brings the email back while a new email
 * in the same conversation does link.
 */

t.setTimeout(120_000);

const CAND = 'pat.candidate@example.org';
const OTHER = 'sam.other@example.org';
const day = (n: number) => new Date(Date.UTC(2025, 0, n, 9));

interface Summary { id: string; subject: string; candidateIds: string[]; messageCount: number; lastMessageAt: string; snippet: string; participants: string[] }
interface Msg { id: string; messageId: string; snippet: string }
interface ThreadView extends Summary { messages: Msg[] }

/** A thread's subject comes from the first of its messages mailsync stored, which may be a reply. */
const topic = (x: Summary) => x.subject.replace(/^Re: /, '');

/** Every page of a candidate's list, `limit` at a time, following the cursors. */
async function walk(d: RunningDaemon, cid: string, limit: number, actingUser?: string): Promise<{ threads: Summary[]; pages: number }> {
  const threads: Summary[] = [];
  let cursor: string | null = '';
  let pages = 0;
  while (cursor !== null) {
    const res: { status: number; body: { threads: Summary[]; nextCursor: string | null } } = await d.api('GET', `/v1/candidates/${cid}/threads?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { actingUser });
    if (res.status !== 200) throw new Error(`list: ${res.status}`);
    threads.push(...res.body.threads);
    cursor = res.body.nextCursor;
    pages++;
  }
  return { threads, pages };
}

t.test('removing an email from a profile', async (t) => {
  const login = await createMailbox('removal');
  const me = login.address;
  const mail = (id: string, n: number, from: string, to: string, subject: string, text: string, parent?: string) =>
    ({ raw: buildMessage({ from, to, subject, messageId: `<${id}>`, date: day(n), text, ...(parent ? { inReplyTo: `<${parent}>`, references: `<${parent}>` } : {}) }), date: day(n) });
  // three ATS threads with the candidate: A (newest activity: its last reply), B, C
  await seedMaildir(login, 'Sent', [
    mail('a0@ats.example.net', 1, me, CAND, 'Interview A', 'When are you free?'),
    mail('b0@ats.example.net', 3, me, CAND, 'Interview B', 'Second round?'),
    mail('c0@ats.example.net', 4, me, CAND, 'Interview C', 'Third round?'),
  ]);
  await seedMaildir(login, 'INBOX', [
    mail('a1@example.org', 2, CAND, me, 'Re: Interview A', 'Monday works.', 'a0@ats.example.net'),
    mail('a2@example.org', 10, `Pat <${CAND}>`, `${me}, ${OTHER}`, 'Re: Interview A', 'Private follow-up 7f3k.', 'a1@example.org'),
    mail('b1@example.org', 8, CAND, me, 'Re: Interview B', 'Yes please.', 'b0@ats.example.net'),
    mail('c1@example.org', 5, CAND, me, 'Re: Interview C', 'Sure.', 'c0@ats.example.net'),
  ]);
  const before = await mailboxSnapshot(login);
  const env = dovecotEnv();
  const d = await startDaemon(t, { overrides: { sync: { tlsCaFile: env.caFile } } });
  await d.api('PUT', '/v1/users/u1', { body: { email: me } });
  await d.api('PUT', '/v1/users/u2', { body: { email: 'casey.colleague@example.com' } });
  await d.api('PUT', '/v1/candidates/c1', { body: { emails: [CAND], name: 'Pat' } });
  // the same person's duplicate profile in the ATS: the same threads, removals of its own
  await d.api('PUT', '/v1/candidates/c3', { body: { emails: [CAND], name: 'Pat (duplicate)' } });
  await d.api('PUT', '/v1/candidates/c2', { body: { emails: ['nobody.here@example.org'] } });
  await d.api('PUT', '/v1/users/u1/mailbox', { actingUser: 'u1', body: { imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } }, syncSince: '2024-06-01T00:00:00Z' } });
  await waitUntil(async () => (await walk(d, 'c1', 50)).threads.reduce((n, x) => n + x.messageCount, 0) === 7, 'the initial sync of all seven messages', 30_000);

  const initial = (await walk(d, 'c1', 50)).threads;
  t.same(initial.map((x) => topic(x)), ['Interview A', 'Interview B', 'Interview C'], 'newest activity first');
  const [A, B, C] = initial.map((x) => x.id) as [string, string, string];
  const read = async (id: string, query = '', actingUser?: string) => d.api<ThreadView>('GET', `/v1/threads/${id}${query}`, { actingUser });
  const keyOf = async (threadId: string, messageId: string) => (await read(threadId)).body.messages.find((m) => m.messageId === `<${messageId}>`)!.id;
  const keys = {
    a0: await keyOf(A, 'a0@ats.example.net'), a1: await keyOf(A, 'a1@example.org'), a2: await keyOf(A, 'a2@example.org'),
    b1: await keyOf(B, 'b1@example.org'), c0: await keyOf(C, 'c0@ats.example.net'), c1: await keyOf(C, 'c1@example.org'),
  };
  const del = (cid: string, key: string, actingUser?: string) => d.api('DELETE', `/v1/candidates/${cid}/messages/${key}`, { actingUser });

  await t.test('404 when the candidate, the message or the link does not exist; 400 for a malformed key', async (t) => {
    const noCandidate = await del('nobody', keys.a2);
    t.same([noCandidate.status, (noCandidate.body as { error: { code: string } }).error.code], [404, 'not_found']);
    t.equal((await del('c1', 'm_doesnotexist0000000000000')).status, 404, 'no such message');
    const notLinked = await del('c2', keys.a2);
    t.equal(notLinked.status, 404, 'the message is not on that profile');
    t.match((notLinked.body as { error: { message: string } }).error.message, /not on the profile of candidate c2/);
    t.equal((await del('c1', 'not-a-key')).status, 400);
  });

  await t.test('the newest reply of A leaves c1\'s profile: counts, snippet, order and cursors follow', async (t) => {
    const res = await del('c1', keys.a2);
    t.equal(res.status, 204);
    t.equal(res.raw.length, 0, 'no body');
    const { threads, pages } = await walk(d, 'c1', 1);
    t.same(threads.map((x) => topic(x)), ['Interview B', 'Interview C', 'Interview A'], 'A now sorts by its newest message still shown (day 2)');
    t.equal(pages, 3, 'one thread a page, and no empty page at the end');
    const a = threads.find((x) => x.id === A)!;
    t.same([a.messageCount, a.lastMessageAt, a.snippet], [2, day(2).toISOString(), 'Monday works.'], 'the summary says nothing of the removed reply');
    t.notOk(a.participants.includes(OTHER), 'an address only the removed reply carried is not listed');
    t.same((await walk(d, 'c1', 2)).threads.map((x) => x.id), threads.map((x) => x.id), 'pages of two give the same list');

    const profile = await read(A, '?candidateId=c1');
    t.equal(profile.status, 200);
    t.same(profile.body.messages.map((m) => m.messageId), ['<a0@ats.example.net>', '<a1@example.org>'], 'the thread as c1\'s profile shows it');
    t.equal(profile.body.messageCount, 2);
    t.notMatch(JSON.stringify(profile.body), /7f3k/, 'nothing of the removed reply in the profile\'s view');
    const whole = await read(A);
    t.equal(whole.body.messages.length, 3, 'without candidateId: the thread as stored, the reply included');
    t.equal((await d.api('GET', `/v1/messages/${keys.a2}`)).status, 200, 'the message stays stored');
    const dup = (await walk(d, 'c3', 50)).threads;
    t.same(dup.map((x) => [topic(x), x.messageCount]), [['Interview A', 3], ['Interview B', 2], ['Interview C', 2]], 'the other profile is untouched');
    t.equal((await read(A, '?candidateId=c3')).body.messages.length, 3);
  });

  const audit = async () => (await d.api<{ entries: Array<{ action: string; actor: { userId: string | null }; target: Record<string, string>; details?: Record<string, unknown> }> }>('GET', '/v1/audit?limit=1000', { actingUser: 'boss', role: 'admin' })).body.entries.filter((e) => e.action === 'message.removed');

  await t.test('the removal is in the audit log, by id only', async (t) => {
    const entries = await audit();
    t.equal(entries.length, 1);
    t.same([entries[0]!.actor.userId, entries[0]!.target, entries[0]!.details], [null, { candidateId: 'c1', messageKey: keys.a2, threadId: A }, { threadUnlinked: false }]);
  });

  await t.test('a repeated removal answers 204 again and changes nothing', async (t) => {
    t.equal((await del('c1', keys.a2)).status, 204);
    t.equal((await audit()).length, 1, 'nothing more in the audit log');
    t.same((await walk(d, 'c1', 50)).threads.map((x) => [topic(x), x.messageCount]), [['Interview B', 2], ['Interview C', 2], ['Interview A', 2]]);
  });

  await t.test('removing every message of C unlinks C from c1 only', async (t) => {
    t.equal((await del('c1', keys.c0)).status, 204);
    t.same((await walk(d, 'c1', 50)).threads.find((x) => x.id === C)?.messageCount, 1, 'one message of C left on the profile');
    t.equal((await del('c1', keys.c1)).status, 204);
    const { threads, pages } = await walk(d, 'c1', 1);
    t.same(threads.map((x) => topic(x)), ['Interview B', 'Interview A'], 'C is gone from the list');
    t.equal(pages, 2, 'and from the pages');
    t.same((await read(C)).body.candidateIds.sort(), ['c3'], 'the thread is linked to c3 only');
    t.equal((await read(C, '?candidateId=c1')).status, 404, 'not on c1\'s profile');
    t.equal((await del('c1', keys.c1)).status, 204, 'repeating a removal of an unlinked thread: 204');
    t.same((await audit()).map((e) => [e.target.messageKey, e.details?.threadUnlinked]), [[keys.a2, false], [keys.c0, false], [keys.c1, true]], 'the audit says when a thread left the profile');
    t.equal((await walk(d, 'c3', 50)).threads.length, 3);
  });

  await t.test('a thread secret to the actor: 404, exactly as a missing message', async (t) => {
    t.equal((await d.api('PUT', `/v1/threads/${B}/secret`, { actingUser: 'u1' })).status, 200);
    const hidden = await del('c1', keys.b1, 'u2');
    const missing = await del('c1', 'm_doesnotexist0000000000000', 'u2');
    t.equal(hidden.status, 404);
    t.same(hidden.body, { error: { code: 'not_found', message: `No message ${keys.b1}.` } });
    t.same(Object.keys(hidden.body as object), Object.keys(missing.body as object));
    t.equal((await read(B, '?candidateId=c1', 'u2')).status, 404);
    t.equal((await walk(d, 'c1', 50, 'u1')).threads.find((x) => x.id === B)?.messageCount, 2, 'nothing was removed');
    t.equal((await audit()).length, 3, 'a refused removal leaves no audit entry');
    t.equal((await del('c1', keys.b1, 'u1')).status, 204, 'the one who made it secret may remove it');
    t.same((await audit()).at(-1)!.actor.userId, 'u1', 'the audit names the acting user');
    t.same((await walk(d, 'c1', 50, 'u1')).threads.find((x) => x.id === B)?.messageCount, 1);
    t.equal((await d.api('DELETE', `/v1/threads/${B}/secret`, { actingUser: 'u1' })).status, 204);
  });

  await t.test('no way of linking brings a removed email back', async (t) => {
    const listNow = async () => (await walk(d, 'c1', 50)).threads.map((x) => [topic(x), x.messageCount]);
    const expected = [['Interview B', 1], ['Interview A', 2]];
    // the candidate's addresses taken away and given again: threads are looked up by address
    t.equal((await d.api('PUT', '/v1/candidates/c1', { body: { emails: [] } })).status, 200);
    const again = await d.api<{ threadsLinked: number }>('PUT', '/v1/candidates/c1', { body: { emails: [CAND] } });
    t.equal(again.body.threadsLinked, 0, 'address linking: nothing linked');
    t.same(await listNow(), expected);
    // the ATS declares the removed message again
    const declared = await d.api<Summary>('POST', '/v1/outbound', { body: { userId: 'u1', messageId: '<c0@ats.example.net>', candidateIds: ['c1', 'c2'] } });
    t.equal(declared.status, 201);
    t.same(declared.body.candidateIds.sort(), ['c2', 'c3'], 'POST /v1/outbound: c1 not linked, c2 is');
    t.same(await listNow(), expected);
    // "add from my mailbox" by the Message-ID of a removed message
    const linked = await d.api<{ error: { code: string; message: string } }>('POST', '/v1/candidates/c1/threads', { actingUser: 'u1', body: { userId: 'u1', messageId: '<c1@example.org>' } });
    t.equal(linked.status, 409, 'link by Message-ID: refused with the reason');
    t.match(linked.body.error.message, /removed from the profile of candidate c1/);
    // "sync emails": a whole import of the candidate's conversations
    const imp = await d.api<{ id: string }>('POST', '/v1/candidates/c1/imports', { actingUser: 'u1', body: { userId: 'u1' } });
    const job = await waitUntil(async () => {
      const j = (await d.api<{ state: string; threadsLinked: number; matched: number }>('GET', `/v1/imports/${imp.body.id}`, { actingUser: 'u1' })).body;
      return j.state === 'done' || j.state === 'failed' ? j : null;
    }, 'the import');
    t.same([job.state, job.threadsLinked], ['done', 0], `import: nothing linked (${job.matched} messages with the candidate found)`);
    t.same(await listNow(), expected);
    t.equal((await read(A, '?candidateId=c1')).body.messages.length, 2, 'A still shows two');
  });

  await t.test('a new email in a removed conversation links, the removed ones stay hidden', async (t) => {
    await appendMessage(login, 'INBOX', buildMessage({ from: CAND, to: me, subject: 'Re: Interview C', messageId: '<c2@example.org>', inReplyTo: '<c1@example.org>', references: '<c0@ats.example.net> <c1@example.org>', date: day(20), text: 'One more question.' }));
    const c = await waitUntil(async () => (await walk(d, 'c1', 50)).threads.find((x) => x.id === C), 'C back on c1\'s profile with the new reply');
    t.same([c.messageCount, c.snippet, c.lastMessageAt], [1, 'One more question.', day(20).toISOString()]);
    t.same((await read(C, '?candidateId=c1')).body.messages.map((m) => m.messageId), ['<c2@example.org>']);
    t.same((await walk(d, 'c1', 50)).threads.map((x) => topic(x)), ['Interview C', 'Interview B', 'Interview A']);
    const events = (await d.api<{ events: Array<{ type: string; data: { candidateIds?: string[]; message?: { messageId: string } } }> }>('GET', '/v1/events?limit=1000')).body.events;
    const created = events.find((e) => e.type === 'message.created' && e.data.message?.messageId === '<c2@example.org>')!;
    t.same(created.data.candidateIds!.sort(), ['c1', 'c2', 'c3'], 'the new reply is announced to c1 as well');
  });

  await t.test('the mailbox did not change', async (t) => {
    const after = await mailboxSnapshot(login);
    const added = after.INBOX!.filter((m) => !before.INBOX!.some((b) => b.uid === m.uid));
    t.equal(added.length, 1, 'only the reply this test appended is new');
    t.same({ ...after, INBOX: after.INBOX!.filter((m) => !added.includes(m)) }, before, 'every other message byte for byte, flags included');
  });
});
