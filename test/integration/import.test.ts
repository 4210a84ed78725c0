import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { buildMessage, createMailbox, dovecotEnv, mailboxSnapshot, seedMaildir } from '../helpers/dovecot.js';
import { startDaemon, TOKEN, waitUntil } from '../helpers/daemon.js';
import { freePort, runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/stack.js';

/**
 * "Sync emails" on a candidate's profile, on the real Dovecot: a mailbox of 2,000+ messages
 * holds three conversations with the candidate (one the candidate started, one the recruiter
 * started outside the ATS, one where the candidate is only in Cc). The import links exactly
 * those three whole threads, in seconds; a second run imports nothing; the mailbox is untouched.
 */

interface ImportView { id: string; state: string; scanned: number; total: number; matched: number; threadsLinked: number; imported: number; error: string | null }
interface Thread { id: string; subject: string; messageCount: number; origin: string; candidateIds: string[] }

const day = (n: number, h = 9) => new Date(Date.UTC(2024, 2, 1 + n, h));

t.test('import older conversations with a candidate', async (t) => {
  const login = await createMailbox('importer');
  const me = login.address;
  const cand = 'ann.lee@example.org';
  const colleague = 'sam.colleague@example.com';
  const inbox: Array<{ raw: string; date: Date }> = [];
  const sent: Array<{ raw: string; date: Date }> = [];
  // 2,000 messages of other people, one of them with an address that contains the candidate's
  for (let i = 0; i < 2_000; i++) {
    const from = i % 97 === 0 ? 'joann.lee@example.org' : `sender${i % 50}@example.net`;
    inbox.push({ raw: buildMessage({ from, to: me, subject: `Newsletter ${i}`, messageId: `<noise-${i}@example.net>`, date: day(i % 300), text: `Issue ${i}.` }), date: day(i % 300) });
  }
  // A: started by the candidate
  inbox.push({ raw: buildMessage({ from: `Ann Lee <Ann.Lee@Example.org>`, to: me, subject: 'Open position', messageId: '<a1@example.org>', date: day(10), text: 'I would like to apply.' }), date: day(10) });
  sent.push({ raw: buildMessage({ from: me, to: cand, subject: 'Re: Open position', messageId: '<a2@example.com>', inReplyTo: '<a1@example.org>', references: '<a1@example.org>', date: day(11), text: 'Thanks, let us talk.' }), date: day(11) });
  inbox.push({ raw: buildMessage({ from: cand, to: me, subject: 'Re: Open position', messageId: '<a3@example.org>', inReplyTo: '<a2@example.com>', references: ['<a1@example.org>', '<a2@example.com>'], date: day(12), text: 'Great.' }), date: day(12) });
  // B: started by the recruiter outside the ATS; a colleague's note joins the thread
  sent.push({ raw: buildMessage({ from: me, to: cand, subject: 'Coffee chat', messageId: '<b1@example.com>', date: day(20), text: 'Coffee?' }), date: day(20) });
  inbox.push({ raw: buildMessage({ from: cand, to: me, subject: 'Re: Coffee chat', messageId: '<b2@example.org>', inReplyTo: '<b1@example.com>', references: '<b1@example.com>', date: day(21), text: 'Yes!' }), date: day(21) });
  inbox.push({ raw: buildMessage({ from: colleague, to: me, subject: 'Re: Coffee chat', messageId: '<b3@example.com>', inReplyTo: '<b2@example.org>', references: ['<b1@example.com>', '<b2@example.org>'], date: day(22), text: 'Can I join?' }), date: day(22) });
  // C: the candidate only in Cc
  inbox.push({ raw: buildMessage({ from: colleague, to: me, cc: `Ann Lee <${cand}>`, subject: 'Referral', messageId: '<c1@example.com>', date: day(30), text: 'Meet Ann.' }), date: day(30) });
  sent.push({ raw: buildMessage({ from: me, to: colleague, cc: cand, subject: 'Re: Referral', messageId: '<c2@example.com>', inReplyTo: '<c1@example.com>', references: '<c1@example.com>', date: day(31), text: 'Thanks both.' }), date: day(31) });
  // not hers: the same subject, another person
  inbox.push({ raw: buildMessage({ from: 'joann.lee@example.org', to: me, subject: 'Open position', messageId: '<x1@example.org>', date: day(13), text: 'Me too.' }), date: day(13) });
  await seedMaildir(login, 'INBOX', inbox);
  await seedMaildir(login, 'Sent', sent);
  const before = await mailboxSnapshot(login);
  t.equal(before.INBOX!.length + before.Sent!.length, 2_009, 'the seeded mailbox holds 2,009 messages');

  const port = await freePort();
  const env = dovecotEnv();
  const d = await startDaemon(t, { overrides: { api: { port }, sync: { tlsCaFile: env.caFile } } });
  await d.api('PUT', '/v1/users/u1', { body: { email: me } });
  await d.api('PUT', '/v1/users/u2', { body: { email: 'other@example.com' } });
  await d.api('PUT', '/v1/candidates/c1', { body: { emails: ['ANN.LEE@example.org'] } });
  await d.api('PUT', '/v1/candidates/c2', { body: { emails: ['someone@example.org'] } });
  // consent from now on: the initial sync looks at nothing older
  await d.api('PUT', '/v1/users/u1/mailbox', { actingUser: 'u1', body: { imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } } } });
  await waitUntil(async () => (await d.api<{ state: string }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body.state === 'live', 'live');
  const eventsOf = async (type: string) => (await d.api<{ events: Array<{ type: string; data: Record<string, unknown> }> }>('GET', '/v1/events?limit=1000')).body.events.filter((e) => e.type === type);

  await t.test('only the mailbox owner may import, for a known candidate', async (t) => {
    t.equal((await d.api('POST', '/v1/candidates/c1/imports', { actingUser: 'u2', body: { userId: 'u1' } })).status, 403);
    t.equal((await d.api('POST', '/v1/candidates/nobody/imports', { actingUser: 'u1', body: { userId: 'u1' } })).status, 404);
    t.equal((await d.api('POST', '/v1/candidates/c1/imports', { actingUser: 'u2', body: { userId: 'u2' } })).status, 409, 'no mailbox consented');
  });

  let first: ImportView;
  await t.test('the import links exactly the three threads, whole, in seconds', async (t) => {
    const started = Date.now();
    const res = await d.api<ImportView>('POST', '/v1/candidates/c1/imports', { actingUser: 'u1', body: { userId: 'u1' } });
    t.equal(res.status, 202);
    t.equal(res.body.state, 'queued');
    const seen = new Set<string>();
    first = await waitUntil(async () => {
      const j = (await d.api<ImportView>('GET', `/v1/imports/${res.body.id}`, { actingUser: 'u1' })).body;
      seen.add(`${j.state}:${j.scanned}`);
      return j.state === 'done' || j.state === 'failed' ? j : null;
    }, 'the import to finish', 60_000, 10);
    const took = Date.now() - started;
    t.equal(first.state, 'done', first.error ?? '');
    t.ok(took < 10_000, `finished in ${took} ms`);
    t.same([first.matched, first.imported, first.threadsLinked], [7, 8, 3], '7 messages with her (one found only as a relative), 8 stored, 3 threads');
    t.ok(first.scanned === first.total && first.total >= 8, `every message found was examined (${first.scanned}/${first.total})`);
    const threads = (await d.api<{ threads: Thread[] }>('GET', '/v1/candidates/c1/threads')).body.threads;
    t.same(threads.map((x) => [x.subject, x.messageCount, x.origin]), [['Referral', 2, 'import'], ['Coffee chat', 3, 'import'], ['Open position', 3, 'import']], 'newest first, whole threads');
    const finished = await eventsOf('import.finished');
    t.equal(finished.length, 1);
    t.same(finished[0]!.data, first, 'import.finished carries the import object');
    t.equal((await eventsOf('thread.linked')).filter((e) => e.data.candidateId === 'c1').length, 3);
  });

  await t.test('a second run imports nothing twice', async (t) => {
    const created = (await eventsOf('message.created')).length;
    const res = await d.api<ImportView>('POST', '/v1/candidates/c1/imports', { actingUser: 'u1', body: { userId: 'u1' } });
    const again = await waitUntil(async () => {
      const j = (await d.api<ImportView>('GET', `/v1/imports/${res.body.id}`, { actingUser: 'u1' })).body;
      return j.state === 'done' ? j : null;
    }, 'the second import');
    t.same([again.matched, again.imported, again.threadsLinked], [7, 0, 0]);
    t.equal((await eventsOf('message.created')).length, created, 'no new message.created');
    t.equal((await d.api<{ threads: Thread[] }>('GET', '/v1/candidates/c1/threads')).body.threads.length, 3);
  });

  await t.test('link one conversation by Message-ID ("add from my mailbox")', async (t) => {
    const res = await d.api<Thread>('POST', '/v1/candidates/c2/threads', { actingUser: 'u1', body: { userId: 'u1', messageId: '<b2@example.org>' } });
    t.equal(res.status, 201);
    t.equal(res.body.subject, 'Coffee chat');
    t.same(res.body.candidateIds.sort(), ['c1', 'c2']);
    const missing = await d.api('POST', '/v1/candidates/c2/threads', { actingUser: 'u1', body: { userId: 'u1', messageId: '<nowhere@example.org>' } });
    t.equal(missing.status, 404);
    const noise = await d.api<Thread>('POST', '/v1/candidates/c2/threads', { actingUser: 'u1', body: { userId: 'u1', messageId: '<noise-5@example.net>' } });
    t.equal(noise.status, 201);
    t.equal(noise.body.origin, 'linked');
    t.equal(noise.body.messageCount, 1);
    t.equal((await d.api('POST', '/v1/candidates/c2/threads', { actingUser: 'u2', body: { userId: 'u1', messageId: '<b2@example.org>' } })).status, 403);
  });

  await t.test('mailsync import --user --candidate shows progress and the outcome', async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'mailsync.yaml');
    fs.writeFileSync(file, YAML.stringify({ api: { host: '127.0.0.1', port, tokens: [TOKEN] } }));
    const r = await runCli(['import', '--user', 'u1', '--candidate', 'c1', '--config', file, '--interval', '20']);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stderr, /\[#+\] 100% {2}done\s+scanned \d+\/\d+ {2}matched 7/, 'a finished progress bar');
    t.match(r.stdout, /done: 7 messages with the candidate, 0 stored, 0 threads linked to c1/);
    const denied = await runCli(['import', '--user', 'u2', '--candidate', 'c1', '--config', file]);
    t.equal(denied.code, 1);
    t.match(denied.stderr, /409: User u2 has not granted access/);
    const usage = await runCli(['import', '--candidate', 'c1', '--config', file]);
    t.equal(usage.code, 2);
    t.match(usage.stderr, /--user must name/);
  });

  await t.test('the mailbox is exactly as it was', async (t) => {
    t.same(await mailboxSnapshot(login), before);
  });
});
