import crypto from 'node:crypto';
import t, { type Test } from 'tap';
import { appendMessage, buildMessage, createMailbox, dovecotEnv, mailboxSnapshot } from '../helpers/dovecot.js';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET, type RunningDaemon } from '../helpers/daemon.js';
import { findAnyCaseInStoreFiles, foundAnywhere } from '../helpers/store-files.js';
import { tempDir } from '../helpers/stack.js';

/**
 * A data-protection erasure end to end, on the real Dovecot through the real sync path, with
 * content encryption off (so a scan of the files for the body proves something) and on: before
 * the erasure a scan of every file of the LevelDB directory finds the candidate's address (as
 * given and normalised, in any case) and a marker from their mail; after it, nothing. A thread
 * shared with another candidate stays theirs; the API and the change feed forget the candidate;
 * the mailbox is untouched; the daemon keeps syncing and restarts clean.
 */

interface Feed { events: Array<{ id: string; type: string; cursor: string; data: Record<string, unknown> }>; nextCursor: string }
interface Summary { id: string; candidateIds: string[]; participants: string[]; messageCount: number }

/** Random lower-case letters: unlike hex, a window of them never turns up in the store by chance. */
const letters = (n: number) => Array.from(crypto.randomBytes(n), (b) => String.fromCharCode(97 + (b % 26))).join('');

async function feed(d: RunningDaemon): Promise<Feed['events']> {
  const res = await d.api<Feed>('GET', '/v1/events?limit=1000');
  if (res.status !== 200) throw new Error(`GET /v1/events: ${res.status}`);
  return res.body.events;
}

async function threadsOf(d: RunningDaemon, cid: string): Promise<Summary[]> {
  return (await d.api<{ threads: Summary[] }>('GET', `/v1/candidates/${cid}/threads`)).body.threads;
}

for (const encryptContent of [false, true]) {
  t.test(`erasing a candidate leaves nothing of them in the store files (encryptContent ${encryptContent ? 'on' : 'off'})`, (t) => eraseEndToEnd(t, encryptContent));
}

async function eraseEndToEnd(t: Test, encryptContent: boolean): Promise<void> {
  const outer = t;
  const login = await createMailbox('erasure');
  const env = dovecotEnv();
  const token = letters(16);
  const given = `Jöns.Erasure.${token}@Example.ORG`;
  const normalised = given.toLowerCase();
  const marker = `marker ${letters(24)}`;
  const sam = `sam.shared.${letters(8)}@example.org`;
  const tag = letters(6);
  const eOriginal = `<e-${tag}@ats.example.net>`;
  const sOriginal = `<s-${tag}@ats.example.net>`;

  // the erased candidate's own thread: the ATS original in Sent and their reply, both with the marker
  await appendMessage(login, 'Sent', buildMessage({ from: `Robin Recruiter <${login.address}>`, to: `Jöns Erasure <${given}>`, subject: 'Interview', messageId: eOriginal, text: `Dear Jöns, ${marker}. When are you free?` }), ['\\Seen']);
  await appendMessage(login, 'INBOX', buildMessage({
    from: `Jöns Erasure <${given}>`, to: login.address, subject: 'Re: Interview', messageId: `<r-${tag}@example.org>`, inReplyTo: eOriginal, references: eOriginal,
    text: `Tuesday. ${marker}`, attachments: [{ filename: 'cv.txt', contentType: 'text/plain', content: Buffer.from(`CV ${marker}`) }],
  }));
  // a thread the ATS declared for both candidates (a reference check about Jöns, sent to Sam)
  await appendMessage(login, 'Sent', buildMessage({ from: `Robin Recruiter <${login.address}>`, to: `Sam Shared <${sam}>`, subject: 'Reference check', messageId: sOriginal, text: 'Could you tell us about your time together?' }), ['\\Seen']);

  const receiver = await startReceiver(t);
  const storeDir = `${tempDir(t)}/store`;
  const overrides = { webhooks: { url: receiver.url, secret: WEBHOOK_SECRET }, sync: { tlsCaFile: env.caFile }, store: { encryptContent } };
  let d = await startDaemon(t, { storeDir, overrides });
  await d.api('PUT', '/v1/users/u1', { body: { email: login.address, name: 'Robin Recruiter' } });
  t.equal((await d.api('PUT', '/v1/candidates/cE', { body: { emails: [given], name: 'Jöns Erasure' } })).status, 200);
  t.equal((await d.api('PUT', '/v1/candidates/cS', { body: { emails: [sam], name: 'Sam Shared' } })).status, 200);
  t.equal((await d.api('POST', '/v1/outbound', { body: { userId: 'u1', messageId: sOriginal, candidateIds: ['cE', 'cS'] } })).status, 201);
  const consent = await d.api('PUT', '/v1/users/u1/mailbox', {
    actingUser: 'u1', body: { imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } }, syncSince: '2020-01-01T00:00:00Z' },
  });
  t.equal(consent.status, 202);

  const synced = await waitUntil(async () => {
    const threads = await threadsOf(d, 'cE');
    return threads.length === 2 && threads.every((th) => th.messageCount >= 1) && threads.some((th) => th.messageCount === 2) ? threads : null;
  }, 'both threads of the candidate to be synced', 20_000);
  const own = synced.find((th) => th.messageCount === 2)!;
  const shared = synced.find((th) => th !== own)!;
  t.same(shared.candidateIds.sort(), ['cE', 'cS'], 'the declared thread is shared by both candidates');
  const ownThread = await d.api<{ messages: Array<{ id: string; attachments: Array<{ id: string }> }> }>('GET', `/v1/threads/${own.id}`);
  const [firstKey, replyKey] = ownThread.body.messages.map((m) => m.id);
  const attachmentId = ownThread.body.messages[1]!.attachments[0]!.id;
  t.equal((await d.api('GET', `/v1/messages/${replyKey}/attachments/${attachmentId}`)).status, 200);
  await waitUntil(() => receiver.ofType('message.created').length >= 3, 'the message.created webhooks');
  const feedBefore = await feed(d);

  const needles = { 'address as given': given, 'address normalised': normalised, 'address token': token, 'body marker': marker };
  await t.test('before the erasure the scan finds the candidate in the files', async (t) => {
    const found = findAnyCaseInStoreFiles(d.storeDir, needles);
    for (const name of ['address as given', 'address normalised', 'address token']) t.ok(found[name]!.length, `${name}: found in ${found[name]!.join(', ')}`);
    if (encryptContent) t.same(found['body marker'], [], 'the body is sealed: its marker is in no file');
    else t.ok(found['body marker']!.length, `body marker: found in ${found['body marker']!.join(', ')}`);
    t.match(JSON.stringify(feedBefore).toLowerCase(), token, 'and the change feed carries the address');
  });

  const mailboxBefore = await mailboxSnapshot(login);
  await t.test('who may erase', async (t) => {
    const byRecruiter = await d.api<{ error: { code: string } }>('DELETE', '/v1/candidates/cE', { actingUser: 'u1' });
    t.equal(byRecruiter.status, 403, 'a recruiter may not');
    t.equal(byRecruiter.body.error.code, 'forbidden');
    t.equal((await d.api('GET', '/v1/candidates/cE')).status, 200, 'and nothing was erased');
    const started = Date.now();
    const erased = encryptContent
      ? await d.api('DELETE', '/v1/candidates/cE', { actingUser: 'dpo', role: 'admin' })
      : await d.api('DELETE', '/v1/candidates/cE');
    t.equal(erased.status, 204, `${encryptContent ? 'an admin' : 'the ATS itself'} may (answered in ${Date.now() - started} ms)`);
  });

  await t.test('after the erasure no file of the store holds the address or the marker', async (t) => {
    t.same(foundAnywhere(findAnyCaseInStoreFiles(d.storeDir, needles)), [], 'nothing found in any file (tables, logs, MANIFEST, LOG)');
  });

  await t.test('the API forgets the candidate and their thread; the shared thread stays for the other', async (t) => {
    t.equal((await d.api('GET', '/v1/candidates/cE')).status, 404, 'the candidate');
    t.same(await threadsOf(d, 'cE'), [], 'their thread list is empty');
    t.equal((await d.api('GET', `/v1/threads/${own.id}`)).status, 404, 'their thread');
    for (const key of [firstKey, replyKey]) {
      t.equal((await d.api('GET', `/v1/messages/${key}`)).status, 404, `message ${key}`);
      t.equal((await d.api('GET', `/v1/messages/${key}/raw`)).status, 404, `its original bytes`);
    }
    t.equal((await d.api('GET', `/v1/messages/${replyKey}/attachments/${attachmentId}`)).status, 404, 'the attachment');
    const forSam = await threadsOf(d, 'cS');
    t.same(forSam.map((th) => [th.id, th.candidateIds]), [[shared.id, ['cS']]], 'the shared thread is still Sam\'s, without the erased candidate');
    const full = await d.api<{ messages: Array<{ text: string }> }>('GET', `/v1/threads/${shared.id}`);
    t.equal(full.status, 200);
    t.match(full.body.messages[0]!.text, /Could you tell us/, 'with its content');
    const status = await d.api<{ counts: { threads: number; messages: number } }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' });
    t.match(status.body.counts, { threads: 1, messages: 1 }, 'the mailbox counts only what is left');
  });

  await t.test('the change feed keeps every event id, and no erased content', async (t) => {
    const after = await feed(d);
    t.same(after.slice(0, feedBefore.length).map((e) => [e.id, e.type, e.cursor]), feedBefore.map((e) => [e.id, e.type, e.cursor]), 'same ids, types and cursors in the same order');
    t.notMatch(JSON.stringify(after).toLowerCase(), token, 'the address is gone');
    t.notMatch(JSON.stringify(after).toLowerCase(), marker.toLowerCase(), 'the marker is gone');
    const aboutOwn = feedBefore.filter((e) => e.data.threadId === own.id).map((e) => e.id);
    t.ok(aboutOwn.length >= 3, 'events of the erased thread existed');
    for (const e of after.filter((x) => aboutOwn.includes(x.id))) t.same(e.data, { erased: true }, `${e.type} ${e.id} now says erased`);
    const linkedCe = after.find((e) => e.type === 'thread.linked' && feedBefore.find((b) => b.id === e.id)?.data.candidateId === 'cE' && feedBefore.find((b) => b.id === e.id)?.data.threadId === shared.id);
    t.same(linkedCe?.data, { erased: true }, 'the erased candidate\'s link to the shared thread is erased too');
    t.ok(after.some((e) => e.type === 'thread.linked' && e.data.threadId === shared.id && e.data.candidateId === 'cS'), 'Sam\'s link stays');
    for (const e of after.filter((x) => x.type === 'message.created' && x.data.threadId === shared.id)) t.same(e.data.candidateIds, ['cS'], 'messages of the shared thread name Sam only');
    const last = after[after.length - 1]!;
    t.same([last.type, last.data], ['candidate.erased', { candidateId: 'cE' }], 'the erasure is announced last');
    const hook = await receiver.waitFor((w) => w.body.type === 'candidate.erased', 'the candidate.erased webhook');
    t.same(hook.body.data, { candidateId: 'cE' });
  });

  await t.test('the audit records who erased whom, never the address', async (t) => {
    const audit = await d.api<{ entries: Array<{ action: string; actor: { userId: string | null; role: string }; target: Record<string, string>; details: Record<string, unknown> }> }>('GET', '/v1/audit?limit=100', { actingUser: 'boss', role: 'admin' });
    const entry = audit.body.entries.find((e) => e.action === 'candidate.erased');
    t.ok(entry, 'one candidate.erased entry');
    t.same(entry!.target, { candidateId: 'cE' });
    t.same([entry!.actor.userId, entry!.actor.role], encryptContent ? ['dpo', 'admin'] : [null, 'user']);
    t.match(entry!.details, { threadsDeleted: 1, threadsUnlinked: 1, messagesDeleted: 2 });
    t.notMatch(JSON.stringify(audit.body).toLowerCase(), token, 'no address in the audit');
  });

  await t.test('the mailbox is untouched', async (t) => {
    t.same(await mailboxSnapshot(login), mailboxBefore, 'flags and messages as before');
  });

  await t.test('the daemon keeps syncing: a reply in the shared thread reaches Sam', async (t) => {
    const before = receiver.ofType('message.created').length;
    await appendMessage(login, 'INBOX', buildMessage({ from: `Sam Shared <${sam}>`, to: login.address, subject: 'Re: Reference check', messageId: `<sam-${tag}@example.org>`, inReplyTo: sOriginal, references: sOriginal, text: 'Gladly.' }));
    const hook = await waitUntil(() => receiver.ofType('message.created').slice(before).find((w) => w.body.data.threadId === shared.id), 'Sam\'s reply');
    t.same(hook.body.data.candidateIds, ['cS']);
  });

  await t.test('a restart is clean and brings nothing back', async (t) => {
    await d.stop();
    d = await startDaemon(outer, { storeDir, overrides });
    await waitUntil(async () => (await d.api<{ state: string }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body.state === 'live', 'live again', 20_000);
    t.notOk(d.logs.some((l) => /interrupted erasure/.test(l)), 'no erasure was left to finish');
    t.equal((await d.api('GET', '/v1/candidates/cE')).status, 404);
    t.equal((await d.api('GET', `/v1/threads/${own.id}`)).status, 404);
    t.equal((await threadsOf(d, 'cS')).length, 1, 'Sam keeps the shared thread');
    t.same(foundAnywhere(findAnyCaseInStoreFiles(d.storeDir, needles)), [], 'still nothing in the files');
  });

  await t.test('later mail from the erased address is kept as from an unknown person', async (t) => {
    const before = receiver.ofType('message.created').length;
    await appendMessage(login, 'INBOX', buildMessage({ from: `Jöns Erasure <${given}>`, to: login.address, subject: 'Re: Interview', messageId: `<late-${tag}@example.org>`, inReplyTo: eOriginal, references: eOriginal, text: 'Still interested.' }));
    const hook = await waitUntil(() => receiver.ofType('message.created').slice(before)[0], 'the late reply');
    t.same(hook.body.data.candidateIds, [], 'linked to no candidate');
    t.not(hook.body.data.threadId, own.id, 'in a new thread');
    t.equal((await d.api('GET', '/v1/candidates/cE')).status, 404, 'the candidate is not brought back');
  });
}
