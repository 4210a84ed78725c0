import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import t from 'tap';
import { appendMessage, buildMessage, createMailbox, dovecotEnv, mailboxSnapshot } from '../helpers/dovecot.js';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET, type RunningDaemon } from '../helpers/daemon.js';
import { tempDir } from '../helpers/stack.js';
import { verifySignature } from '../../daemon/events/signature.js';
import { BODY_MARKER } from '../helpers/log-capture.js';

/**
 * The main job, end to end on the real Dovecot: consent → live; initial sync finds an ATS
 * thread split across Sent and INBOX; a live reply becomes a signed webhook within 2 s and is
 * served with its text and attachment bytes; unrelated mail is never stored; a restart
 * catches up once without replaying; and the mailbox is left exactly as it was.
 */

const recruiterPass = `pw-${crypto.randomBytes(6).toString('hex')}-secret`;

t.test('sync a recruiter mailbox end to end', async (t) => {
  // a distinctive password, so the logs and the store can be scanned for it
  const login = await createMailbox('recruiter', recruiterPass);
  const env = dovecotEnv();
  const recruiter = login.address;
  const candidate = 'pat.candidate@example.org';

  // before consent: the ATS original in Sent, the candidate's reply in INBOX, other mail around
  const original = buildMessage({ from: `Robin Recruiter <${recruiter}>`, to: `Pat Candidate <${candidate}>`, subject: 'Interview at Example Corp', messageId: '<int-1.k3j@ats.example.net>', text: `When are you free next week? (${BODY_MARKER})` });
  await appendMessage(login, 'Sent', original, ['\\Seen']);
  await appendMessage(login, 'INBOX', buildMessage({ from: 'Newsletter <news@example.com>', to: recruiter, subject: 'Weekly digest', text: 'Nothing to do with hiring.' }));
  await appendMessage(login, 'INBOX', buildMessage({ from: `Pat Candidate <${candidate}>`, to: recruiter, subject: 'Re: Interview at Example Corp', messageId: '<reply-1@example.org>', inReplyTo: '<int-1.k3j@ats.example.net>', references: '<int-1.k3j@ats.example.net>', text: `Tuesday works. (${BODY_MARKER})` }));
  await appendMessage(login, 'INBOX', buildMessage({ from: 'Colleague <colleague@example.com>', to: recruiter, subject: 'Lunch?', text: `Private. (${BODY_MARKER})` }), ['\\Flagged']);

  const receiver = await startReceiver(t);
  const storeParent = tempDir(t);
  const storeDir = path.join(storeParent, 'store');
  let d: RunningDaemon = await startDaemon(t, { storeDir, overrides: { webhooks: { url: receiver.url, secret: WEBHOOK_SECRET }, sync: { tlsCaFile: env.caFile } } });

  await t.test('register, consent, and reach live', async (t) => {
    t.equal((await d.api('PUT', '/v1/users/u1', { body: { email: recruiter, name: 'Robin Recruiter' } })).status, 200);
    t.equal((await d.api('PUT', '/v1/candidates/c1', { body: { emails: [candidate.toUpperCase()], name: 'Pat' } })).status, 200, 'candidate addresses match case-insensitively');
    const consent = await d.api('PUT', '/v1/users/u1/mailbox', {
      actingUser: 'u1',
      body: { imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: recruiterPass } }, syncSince: '2020-01-01T00:00:00Z' },
    });
    t.equal(consent.status, 202);
    t.notOk(JSON.stringify(consent.body).includes(recruiterPass), 'the password is not echoed');
    const status = await waitUntil(async () => {
      const s = await d.api<{ state: string; folders: Array<{ path: string }> }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' });
      return s.body.state === 'live' ? s.body : null;
    }, 'state live');
    t.same(status.folders.map((f) => f.path).sort(), ['INBOX', 'Sent'], 'INBOX and Sent are synced');
    const states = receiver.ofType('mailbox.state_changed').map((w) => w.body.data.state);
    t.ok(states.includes('live'), 'a mailbox.state_changed webhook announced live');
  });

  let threadId = '';
  await t.test('initial sync joins the original in Sent and the reply in INBOX', async (t) => {
    const list = await waitUntil(async () => {
      const r = await d.api<{ threads: Array<{ id: string; messageCount: number }> }>('GET', '/v1/candidates/c1/threads');
      return r.body.threads[0]?.messageCount === 2 ? r.body : null;
    }, 'a thread of two messages');
    t.equal(list.threads.length, 1, 'one thread for the candidate');
    threadId = list.threads[0]!.id;
    const thread = await d.api<{ messages: Array<{ subject: string; direction: string; seenIn: Array<{ folder: string }> }>; origin: string }>('GET', `/v1/threads/${threadId}`);
    t.equal(thread.body.origin, 'ats');
    t.same(thread.body.messages.map((m) => [m.direction, m.seenIn[0]!.folder]), [['outbound', 'Sent'], ['inbound', 'INBOX']], 'outbound original from Sent, inbound reply from INBOX');
    const created = await waitUntil(() => (receiver.ofType('message.created').length >= 2 ? receiver.ofType('message.created') : null), 'two message.created webhooks');
    t.equal(created.length, 2);
  });

  await t.test('a reply appended while live arrives as a signed webhook within 2 s, bytes intact', async (t) => {
    const pdf = crypto.randomBytes(30_000);
    const raw = buildMessage({
      from: `Pat Candidate <${candidate}>`, to: recruiter, subject: 'Re: Interview at Example Corp', messageId: '<reply-2@example.org>',
      inReplyTo: '<reply-1@example.org>', references: ['<int-1.k3j@ats.example.net>', '<reply-1@example.org>'],
      text: 'Here is my CV. Grüße!', attachments: [{ filename: 'cv.pdf', contentType: 'application/pdf', content: pdf }],
    });
    const before = receiver.received.length;
    const appendedAt = Date.now();
    await appendMessage(login, 'INBOX', raw);
    const hook = await receiver.waitFor((w) => w.body.type === 'message.created' && (w.body.data.message as { messageId: string }).messageId === '<reply-2@example.org>', 'the webhook of the new reply', 10_000);
    const latency = hook.at - appendedAt;
    t.ok(latency < 2_000, `webhook within 2 s of the append (took ${latency} ms)`);
    t.ok(receiver.received.length > before);
    t.equal(hook.headers['x-mailsync-event'], 'message.created');
    t.equal(hook.headers['x-mailsync-delivery'], hook.body.id, 'delivery header carries the event id');
    t.ok(verifySignature(WEBHOOK_SECRET, String(hook.headers['x-mailsync-signature']), hook.raw), 'signature verifies over timestamp and raw body');
    t.notOk(verifySignature('wrong-secret', String(hook.headers['x-mailsync-signature']), hook.raw), 'and fails with another secret');
    const data = hook.body.data as { userId: string; threadId: string; candidateIds: string[]; secret: boolean; message: Record<string, unknown> };
    t.same([data.userId, data.threadId, data.candidateIds, data.secret], ['u1', threadId, ['c1'], false]);
    t.notOk('text' in data.message || 'html' in data.message, 'the webhook carries no body text');

    const key = data.message.id as string;
    const msg = await d.api<{ text: string; attachments: Array<{ id: string; filename: string; contentType: string; size: number }> }>('GET', `/v1/messages/${key}`);
    t.equal(msg.status, 200);
    t.match(msg.body.text, /Here is my CV\. Grüße!/);
    t.same(msg.body.attachments.map((a) => [a.filename, a.contentType, a.size]), [['cv.pdf', 'application/pdf', pdf.length]]);
    const att = await d.api('GET', `/v1/messages/${key}/attachments/${msg.body.attachments[0]!.id}`);
    t.equal(att.status, 200);
    t.equal(att.headers.get('content-type'), 'application/pdf');
    t.match(att.headers.get('content-disposition') ?? '', /filename="cv\.pdf"/);
    t.ok(att.raw.equals(pdf), 'attachment bytes identical');
    const rawRes = await d.api('GET', `/v1/messages/${key}/raw`);
    t.equal(rawRes.headers.get('content-type'), 'message/rfc822');
    t.ok(rawRes.raw.equals(Buffer.from(raw)), 'original bytes identical');
  });

  await t.test('unrelated mail is never stored and produces no event', async (t) => {
    const eventsBefore = (await d.api<{ events: unknown[] }>('GET', '/v1/events?limit=1000')).body.events.length;
    await appendMessage(login, 'INBOX', buildMessage({ from: 'Friend <friend@example.net>', to: recruiter, subject: 'Re: Interview at Example Corp', messageId: '<private-1@example.net>', text: 'Same subject, not ours.' }));
    // a tracked message appended after it proves the sync has looked past the unrelated one
    await appendMessage(login, 'INBOX', buildMessage({ from: `Pat Candidate <${candidate}>`, to: recruiter, subject: 'Re: Interview', messageId: '<reply-3@example.org>', inReplyTo: '<int-1.k3j@ats.example.net>', text: 'One more thing.' }));
    await receiver.waitFor((w) => (w.body.data.message as { messageId?: string } | undefined)?.messageId === '<reply-3@example.org>', 'reply-3');
    const events = (await d.api<{ events: Array<{ type: string; data: { message?: { messageId: string } } }> }>('GET', '/v1/events?limit=1000')).body.events;
    t.equal(events.length, eventsBefore + 1, 'exactly one new event: the tracked reply');
    t.notOk(JSON.stringify(events).includes('private-1'), 'nothing about the unrelated message in the feed');
    const status = await d.api<{ counts: { threads: number; messages: number } }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' });
    t.same(status.body.counts, { threads: 1, messages: 4, quarantined: 0 }, 'only the thread is stored');
  });

  await t.test('stopped, mail appended, restarted: arrives once, nothing replayed', async (t) => {
    const idsBefore = (await d.api<{ events: Array<{ id: string }> }>('GET', '/v1/events?limit=1000')).body.events.map((e) => e.id);
    const hooksBefore = receiver.received.length;
    await d.stop();
    await appendMessage(login, 'INBOX', buildMessage({ from: `Pat Candidate <${candidate}>`, to: recruiter, subject: 'Re: Interview', messageId: '<while-down@example.org>', references: '<int-1.k3j@ats.example.net>', text: 'Sent while you were away.' }));
    await appendMessage(login, 'INBOX', buildMessage({ from: 'Spam <spam@example.net>', to: recruiter, subject: 'Win', text: 'no' }));
    d = await startDaemon(t, { storeDir, overrides: { webhooks: { url: receiver.url, secret: WEBHOOK_SECRET }, sync: { tlsCaFile: env.caFile } } });
    await receiver.waitFor((w) => (w.body.data.message as { messageId?: string } | undefined)?.messageId === '<while-down@example.org>', 'the mail that arrived while down');
    await waitUntil(async () => (await d.api<{ state: string }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body.state === 'live', 'live again');
    const events = (await d.api<{ events: Array<{ id: string; type: string; data: { message?: { messageId: string } } }> }>('GET', '/v1/events?limit=1000')).body.events;
    const newEvents = events.filter((e) => !idsBefore.includes(e.id));
    t.same(newEvents.filter((e) => e.type === 'message.created').map((e) => e.data.message!.messageId), ['<while-down@example.org>'], 'only the new message, once');
    t.equal(new Set(events.map((e) => e.id)).size, events.length, 'no event id duplicated');
    const newHooks = receiver.received.slice(hooksBefore).filter((w) => w.body.type === 'message.created');
    t.same(newHooks.map((w) => (w.body.data.message as { messageId: string }).messageId), ['<while-down@example.org>'], 'no old message was pushed again');
  });

  await t.test('the mailbox is left exactly as it was', async (t) => {
    const snap = await mailboxSnapshot(login);
    const flagsOf = (folder: string) => snap[folder]!.map((m) => m.flags.slice().sort().join(' '));
    t.same(flagsOf('Sent'), ['\\Seen'], 'Sent: still only \\Seen on the original');
    t.same(flagsOf('INBOX'), ['', '', '\\Flagged', '', '', '', '', ''], 'INBOX: nothing marked \\Seen, the flag set by the user still there');
    t.equal(snap.INBOX!.length, 8, 'no message added or removed');
  });

  await t.test('the IMAP password is in no log line and in no store file in clear', async (t) => {
    await d.stop();
    t.ok(d.logs.length > 10, 'the daemon did log');
    t.notOk(d.logs.some((l) => l.includes(recruiterPass)), 'not in the logs');
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else files.push(p);
      }
    };
    walk(storeParent);
    t.ok(files.length > 3, 'store files exist');
    const needle = Buffer.from(recruiterPass);
    t.same(files.filter((f) => fs.readFileSync(f).includes(needle)), [], 'not in any LevelDB file');
    for (const f of files) {
      if (fs.readFileSync(f).includes(Buffer.from('Tuesday works.'))) t.fail(`message content in clear in ${path.basename(f)} although encryptContent is on`);
    }
    const logsJson = d.logs.map((l) => JSON.parse(l) as { component?: string; userId?: string });
    t.ok(logsJson.some((l) => l.component === 'sync' && l.userId === 'u1'), 'account logs carry the account ids');
  });
});
