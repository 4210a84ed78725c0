import t from 'tap';
import { startDaemon, waitUntil } from '../helpers/daemon.js';
import { buildMessage } from '../helpers/dovecot.js';
import { FakeImapServer } from '../fakes/imap-server.js';

/**
 * Gmail's IMAP extensions, which Dovecot does not have, on the scripted fake Gmail server
 * (test/fakes/imap-server.ts): All Mail is synced instead of INBOX + Sent, X-GM-THRID joins a
 * reply that carries no References, and an import searches with X-GM-RAW.
 */

interface Thread { id: string; messageCount: number; origin: string }

t.test('a Gmail account: All Mail, X-GM-THRID as thread evidence, X-GM-RAW imports', async (t) => {
  const gmail = await new FakeImapServer({ gmail: true }).start(t);
  const me = 'robin.recruiter@example.com';
  const cand = 'kim.candidate@gmail.com';
  // an ATS thread: the original in Sent, a reply in INBOX; Gmail puts both in All Mail too
  const at = (min: number) => new Date(Date.UTC(2026, 0, 5, 9, min));
  const ats = gmail.add(['[Gmail]/Sent Mail'], buildMessage({ from: me, to: cand, subject: 'Interview', messageId: '<g-1@ats.example.net>', date: at(0), text: 'When?' }));
  gmail.add(['INBOX'], buildMessage({ from: cand, to: me, subject: 'Re: Interview', messageId: '<g-2@gmail.com>', inReplyTo: '<g-1@ats.example.net>', date: at(1), text: 'Monday.' }), { thread: ats.gmThrId });
  // a reply whose client dropped In-Reply-To and References: only Gmail's thread id ties it
  gmail.add(['INBOX'], buildMessage({ from: cand, to: me, subject: 'Re: Interview', messageId: '<g-3@gmail.com>', date: at(2), text: 'Or Tuesday.' }), { thread: ats.gmThrId });
  // unrelated mail with the same subject in another Gmail thread
  gmail.add(['INBOX'], buildMessage({ from: 'other@example.org', to: me, subject: 'Re: Interview', messageId: '<g-4@example.org>', text: 'Not yours.' }));

  const d = await startDaemon(t);
  await d.api('PUT', '/v1/users/u1', { body: { email: me } });
  await d.api('PUT', '/v1/candidates/c1', { body: { emails: ['Kim.Candidate+jobs@gmail.com'] } });
  await d.api('PUT', '/v1/users/u1/mailbox', {
    actingUser: 'u1',
    body: { imap: { host: '127.0.0.1', port: gmail.port, secure: false, auth: { user: me, pass: 'app-password' } }, syncSince: '2020-01-01T00:00:00Z' },
  });
  const status = await waitUntil(async () => {
    const s = (await d.api<{ state: string; folders: Array<{ path: string; specialUse: string }> }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body;
    return s.state === 'live' ? s : null;
  }, 'live');

  await t.test('All Mail is the one folder synced (it holds sent mail too)', async (t) => {
    t.same(status.folders.map((f) => [f.path, f.specialUse]), [['[Gmail]/All Mail', '\\All']]);
    const examined = gmail.commands.filter((c) => c.command === 'EXAMINE').map((c) => c.args.replace(/"/g, ''));
    t.notOk(examined.some((p) => p === 'INBOX' || p.includes('Sent Mail')), 'INBOX and Sent Mail are not opened');
    t.ok(gmail.commands.some((c) => c.command === 'UID FETCH' && /X-GM-MSGID/.test(c.args) && /X-GM-THRID/.test(c.args)), 'X-GM-MSGID and X-GM-THRID are fetched');
  });

  await t.test('the thread holds the ATS original, the reply, and the reply tied only by X-GM-THRID', async (t) => {
    const threads = await waitUntil(async () => {
      const r = await d.api<{ threads: Thread[] }>('GET', '/v1/candidates/c1/threads');
      return r.body.threads[0]?.messageCount === 3 ? r.body.threads : null;
    }, 'a thread of three');
    t.equal(threads.length, 1);
    const full = await d.api<{ messages: Array<{ messageId: string; seenIn: Array<{ folder: string }> }> }>('GET', `/v1/threads/${threads[0]!.id}`);
    t.same(full.body.messages.map((m) => m.messageId), ['<g-1@ats.example.net>', '<g-2@gmail.com>', '<g-3@gmail.com>']);
    t.ok(full.body.messages.every((m) => m.seenIn.every((s) => s.folder === '[Gmail]/All Mail')), 'each seen once, in All Mail');
    const counts = (await d.api<{ counts: { messages: number } }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body.counts;
    t.equal(counts.messages, 3, 'the unrelated message with the same subject is not stored');
  });

  await t.test('a live reply in All Mail arrives through IDLE', async (t) => {
    gmail.add(['INBOX'], buildMessage({ from: cand, to: me, subject: 'Re: Interview', messageId: '<g-5@gmail.com>', inReplyTo: '<g-3@gmail.com>', text: 'Confirmed.' }), { thread: ats.gmThrId });
    await waitUntil(async () => (await d.api<{ threads: Thread[] }>('GET', '/v1/candidates/c1/threads')).body.threads[0]?.messageCount === 4, 'the fourth message');
    t.pass('stored');
  });

  await t.test('an import searches All Mail with X-GM-RAW (dots and +tags are Gmail\'s business)', async (t) => {
    // an older conversation outside the ATS, written to the dotless form of the address
    const old = gmail.add(['[Gmail]/Sent Mail'], buildMessage({ from: me, to: 'kimcandidate@gmail.com', subject: 'Coffee?', messageId: '<old-1@example.com>', date: new Date('2021-05-01T10:00:00Z'), text: 'Coffee next week?' }), { date: new Date('2021-05-01T10:00:00Z') });
    gmail.add(['INBOX'], buildMessage({ from: 'kimcandidate@gmail.com', to: me, subject: 'Re: Coffee?', messageId: '<old-2@gmail.com>', inReplyTo: '<old-1@example.com>', date: new Date('2021-05-02T10:00:00Z'), text: 'Sure.' }), { thread: old.gmThrId, date: new Date('2021-05-02T10:00:00Z') });
    const res = await d.api<{ id: string }>('POST', '/v1/candidates/c1/imports', { actingUser: 'u1', body: { userId: 'u1' } });
    t.equal(res.status, 202);
    const done = await waitUntil(async () => {
      const j = (await d.api<{ state: string; threadsLinked: number; matched: number }>('GET', `/v1/imports/${res.body.id}`, { actingUser: 'u1' })).body;
      return j.state === 'done' || j.state === 'failed' ? j : null;
    }, 'import done');
    t.equal(done.state, 'done');
    const searches = gmail.commands.filter((c) => c.command === 'UID SEARCH' && c.args.includes('X-GM-RAW'));
    t.ok(searches.length >= 1, 'X-GM-RAW was used');
    t.match(searches[0]!.args, /from:kim\.candidate\+jobs@gmail\.com/);
    t.equal(done.threadsLinked, 1, 'the coffee thread is linked (the ATS thread already was)');
    const threads = (await d.api<{ threads: Thread[] }>('GET', '/v1/candidates/c1/threads')).body.threads;
    t.same(threads.map((x) => [x.messageCount, x.origin]).sort(), [[2, 'import'], [4, 'ats']]);
  });
});
