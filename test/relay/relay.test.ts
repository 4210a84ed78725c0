import t, { type Test } from 'tap';
import { appendMessage, buildMessage, createMailbox, dovecotEnv, mailboxSnapshot, type Account } from '../helpers/dovecot.js';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET, type RunningDaemon } from '../helpers/daemon.js';
import { ATS_LOGIN, atsClient, rawHeader, startSink, type Sink } from '../helpers/smtp.js';

/**
 * The relay end to end with real parts: nodemailer as the ATS's client, the daemon's
 * submission listener, a smtp-server sink standing for the recruiter's provider, and the
 * recruiter's real Dovecot mailbox where the candidate's reply lands.
 */

const CANDIDATE = 'casey.candidate@example.org';

/**
 * `providerKeepsSent`: the sink puts a copy of what it accepts into the recruiter's Sent folder,
 * as Gmail and Microsoft 365 do for mail sent over SMTP.
 */
async function setup(t: Test, extra: Record<string, unknown> = {}, providerKeepsSent = true): Promise<{ d: RunningDaemon; sink: Sink; login: Account; smtpPass: string; receiver: Awaited<ReturnType<typeof startReceiver>> }> {
  const login = await createMailbox('relay');
  const smtpPass = 'provider-smtp-pass-31c9';
  const sink = await startSink(t, {
    auth: { user: login.user, pass: smtpPass },
    onData: (msg) => {
      if (providerKeepsSent) void appendMessage(login, 'Sent', msg.raw, ['\\Seen']);
      return null;
    },
  });
  const receiver = await startReceiver(t);
  const env = dovecotEnv();
  const d = await startDaemon(t, {
    smtp: true,
    overrides: {
      webhooks: { url: receiver.url, secret: WEBHOOK_SECRET },
      sync: { tlsCaFile: env.caFile },
      smtp: { submission: { users: [ATS_LOGIN] }, relay: { allowPlaintext: true, retryDelaysSeconds: [0.2, 0.2], ...extra } },
    },
  });
  t.equal((await d.api('PUT', '/v1/users/u1', { body: { email: login.address, name: 'Robin Recruiter' } })).status, 200);
  t.equal((await d.api('PUT', '/v1/candidates/c1', { body: { emails: [CANDIDATE], name: 'Casey Candidate' } })).status, 200);
  const consent = await d.api('PUT', '/v1/users/u1/mailbox', {
    actingUser: 'u1',
    body: {
      imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } },
      smtp: { host: '127.0.0.1', port: sink.port, secure: false, auth: { user: login.user, pass: smtpPass } },
    },
  });
  t.equal(consent.status, 202);
  await waitUntil(async () => (await d.api<{ state: string }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body.state === 'live', 'the mailbox to go live');
  return { d, sink, login, smtpPass, receiver };
}

t.test('the ATS sends as the recruiter; the reply in the real mailbox joins the same thread', async (t) => {
  const { d, sink, login, receiver } = await setup(t);
  const before = await mailboxSnapshot(login);
  const ats = atsClient(d.daemon.parts.relay.ports.submission);
  t.teardown(() => ats.close());
  const info = await ats.sendMail({
    from: `Robin Recruiter <${login.address}>`,
    to: `Casey Candidate <${CANDIDATE}>`,
    subject: 'Interview for the Data Engineer role',
    text: 'Hello Casey,\n\nCould you do a call on Thursday?\n\nRobin',
    headers: { 'X-Mailsync-Candidate': 'c1', 'X-Mailsync-Trace': 'internal-note' },
  });
  const m = /queued as (q_[0-9a-z]+) (<[^>]+>)/.exec(info.response);
  t.ok(m, `250 names the queue id and the Message-ID (${info.response})`);
  const [, queueId, stampedId] = m!;

  await waitUntil(() => sink.messages.length === 1, 'the message at the provider');
  const sent = sink.messages[0]!;
  t.equal(rawHeader(sent.raw, 'Message-ID'), stampedId, 'the provider got the Message-ID the ATS was told');
  t.match(stampedId!, /^<[0-9a-z]+\.[0-9a-f]{12}@ats\.example\.net>$/, 'stamped in the first ATS domain, with a token');
  t.notMatch(sent.raw.toString('latin1'), /^x-mailsync-/im, 'no X-Mailsync-* header leaves the daemon');
  t.equal(rawHeader(sent.raw, 'Subject'), 'Interview for the Data Engineer role', 'everything else is passed on');
  t.match(sent.raw.toString('utf8'), /Could you do a call on Thursday\?/);
  t.equal(sent.authUser, login.user, 'sent with the recruiter\'s own smtp login');
  t.equal(sent.from, login.address, 'envelope sender is the recruiter');
  t.same(sent.to, [CANDIDATE]);

  const sentEvent = await receiver.waitFor((w) => w.body.type === 'message.sent', 'message.sent');
  const data = sentEvent.body.data as { userId: string; messageId: string; queueId: string; error: null; threadId: string; secret: boolean; accepted: string[] };
  t.same([data.userId, data.messageId, data.queueId, data.error, data.accepted, data.secret], ['u1', stampedId, queueId, null, [CANDIDATE], false]);

  const threads = await d.api<{ threads: Array<{ id: string; origin: string; candidateIds: string[]; ownerUserIds: string[] }> }>('GET', '/v1/candidates/c1/threads');
  t.equal(threads.body.threads.length, 1, 'the thread was recorded and linked to the named candidate');
  const thread = threads.body.threads[0]!;
  t.same([thread.id, thread.origin, thread.candidateIds, thread.ownerUserIds], [data.threadId, 'ats', ['c1'], ['u1']]);
  const linked = receiver.ofType('thread.linked').map((w) => w.body.data);
  t.same(linked, [{ threadId: thread.id, candidateId: 'c1', origin: 'ats', secret: false }], 'thread.linked before any mail came back');

  // the candidate answers; the reply lands in the recruiter's INBOX at Dovecot
  await appendMessage(login, 'INBOX', buildMessage({
    from: `Casey Candidate <${CANDIDATE}>`, to: login.address, subject: 'Re: Interview for the Data Engineer role',
    inReplyTo: stampedId, references: stampedId, text: 'Thursday at 14:00 works for me.',
  }));
  const created = await receiver.waitFor((w) => w.body.type === 'message.created' && (w.body.data as { message: { direction: string } }).message.direction === 'inbound', 'the reply webhook');
  t.equal((created.body.data as { threadId: string }).threadId, thread.id, 'the IMAP sync matched the reply to the relayed thread');
  // the provider's copy in Sent is how the sync learns of the sent message (the relay does not store it for a mailbox it reads)
  const full = await waitUntil(async () => {
    const r = await d.api<{ messageCount: number; messages: Array<{ direction: string; messageId: string; seenIn: Array<{ folder: string }> }> }>('GET', `/v1/threads/${thread.id}`);
    return r.body.messages.length === 2 ? r : null;
  }, 'the sent copy and the reply in the thread');
  const replyId = (created.body.data as { message: { messageId: string } }).message.messageId;
  t.same(full.body.messages.map((x) => [x.direction, x.messageId]), [['outbound', stampedId], ['inbound', replyId]], 'the sent message and the reply, in order');
  t.same(full.body.messages[0]!.seenIn, [{ userId: 'u1', folder: 'Sent' }], 'the sent message was found in Sent');

  const after = await mailboxSnapshot(login);
  t.equal(after.Sent!.length, before.Sent!.length + 1, 'Sent holds the provider\'s copy and no other: the daemon wrote nothing (appendToSent is off)');
  t.same(after.INBOX!.map((m) => m.flags), [[]], 'the reply is still unread');
  const metrics = await (await fetch(`${d.daemon.apiUrl}/metrics`)).text();
  t.match(metrics, /mailsync_relay_messages_total\{outcome="sent"\} 1/);
  t.match(metrics, /mailsync_relay_submissions_total\{outcome="accepted"\} 1/);
  t.match(metrics, /mailsync_relay_queue_depth 0/);
});

t.test('Message-IDs: the ATS\'s own in its domain is kept, any other is replaced; X-Mailsync-User names the sender', async (t) => {
  const { d, sink, login } = await setup(t);
  const ats = atsClient(d.daemon.parts.relay.ports.submission);
  t.teardown(() => ats.close());
  const own = '<offer-20260901.77@mail.ats.example.net>';
  const a = await ats.sendMail({ from: login.address, to: CANDIDATE, subject: 'Offer', text: 'Offer attached.', messageId: own });
  t.match(a.response, own, 'an id in an ATS domain (a subdomain too) is kept');
  // the ATS sends from its own bounce address in its domain and names the user
  const b = await ats.sendMail({
    envelope: { from: 'bounces@ats.example.net', to: [CANDIDATE] },
    from: `Robin <${login.address}>`, to: CANDIDATE, subject: 'Reminder', text: 'See you soon.',
    messageId: '<local-17@ats-host.internal>', headers: { 'X-Mailsync-User': 'u1', 'X-Mailsync-Candidate': 'c1, c2' },
  });
  const stamped = /queued as q_[0-9a-z]+ (<[^>]+>)/.exec(b.response)![1]!;
  t.not(stamped, '<local-17@ats-host.internal>', 'a foreign id is replaced');
  await waitUntil(() => sink.messages.length === 2, 'both messages at the provider');
  const ids = sink.messageIds();
  t.same(ids, [own, stamped]);
  t.equal(sink.messages[1]!.from, login.address, 'sent with the named user\'s address as envelope sender');
  t.equal(sink.messages[1]!.raw.toString('latin1').match(/^message-id:/gim)?.length, 1, 'exactly one Message-ID');
  const declared = await d.api<{ threads: Array<{ candidateIds: string[] }> }>('GET', '/v1/candidates/c2/threads');
  t.same(declared.body.threads.map((x) => x.candidateIds), [['c1', 'c2']], 'linked to every named candidate');
});

t.test('appendToSent puts the sent message into the Sent folder, and the sync sees it as the same message', async (t) => {
  const { d, sink, login } = await setup(t, { appendToSent: true }, false);
  const ats = atsClient(d.daemon.parts.relay.ports.submission);
  t.teardown(() => ats.close());
  const info = await ats.sendMail({ from: login.address, to: CANDIDATE, subject: 'Next steps', text: 'Here are the next steps.', headers: { 'X-Mailsync-Candidate': 'c1' } });
  const stamped = /(<[^>]+>)$/.exec(info.response.trim())![1]!;
  await waitUntil(() => sink.messages.length === 1, 'the message at the provider');
  const snap = await waitUntil(async () => {
    const s = await mailboxSnapshot(login);
    return s.Sent?.length === 1 ? s : null;
  }, 'the copy in Sent');
  t.same(snap.Sent![0]!.flags, ['\\Seen'], 'the copy is marked read');
  const threadId = await waitUntil(async () => (await d.api<{ threads: Array<{ id: string }> }>('GET', '/v1/candidates/c1/threads')).body.threads[0]?.id, 'the thread');
  const seen = await waitUntil(async () => {
    const th = await d.api<{ messages: Array<{ messageId: string; seenIn: Array<{ folder: string }> }> }>('GET', `/v1/threads/${threadId}`);
    const msg = th.body.messages[0];
    return msg && msg.seenIn.some((s) => s.folder === 'Sent') ? th.body : null;
  }, 'the sync to find the Sent copy');
  t.equal(seen.messages.length, 1, 'stored once');
  t.equal(seen.messages[0]!.messageId, stamped);
});
