import t from 'tap';
import nodemailer from 'nodemailer';
import { buildMessage } from '../helpers/dovecot.js';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';
import { ATS_LOGIN, atsClient, startSink } from '../helpers/smtp.js';

/**
 * A removal lasts on the SMTP paths too (limited sync, no IMAP at all): the ATS sends through
 * the relay naming the candidate in X-Mailsync-Candidate, the candidate's reply comes in through
 * the intake. Once both are removed from the profile, the reply forwarded again and the very
 * same message submitted again with the candidate named do not bring them back; a new reply
 * in the conversation does link, alone.
 */

const CANDIDATE = 'morgan.removal@example.org';
const ROBIN = 'robin@example.com';
const SENT_ID = '<offer-1@ats.example.net>';
const SENT_DATE = new Date(Date.UTC(2025, 4, 2, 9));

interface Summary { id: string; candidateIds: string[]; messageCount: number }
interface ThreadView extends Summary { messages: Array<{ id: string; messageId: string }> }

t.test('relay and intake: removed mail stays off the profile, new mail links', async (t) => {
  const sink = await startSink(t);
  const receiver = await startReceiver(t);
  const d = await startDaemon(t, {
    smtp: true,
    overrides: {
      webhooks: { url: receiver.url, secret: WEBHOOK_SECRET },
      smtp: { submission: { users: [ATS_LOGIN] }, relay: { allowPlaintext: true, smarthost: { host: '127.0.0.1', port: sink.port } } },
    },
  });
  await d.api('PUT', '/v1/users/u1', { body: { email: ROBIN } });
  await d.api('PUT', '/v1/candidates/c1', { body: { emails: [CANDIDATE] } });
  const ats = atsClient(d.daemon.parts.relay.ports.submission);
  t.teardown(() => ats.close());
  const provider = nodemailer.createTransport({ host: '127.0.0.1', port: d.daemon.parts.relay.ports.intake, secure: false, ignoreTLS: true, logger: false });
  t.teardown(() => provider.close());
  const forward = (raw: string) => provider.sendMail({ envelope: { from: 'forwarder@example.com', to: [ROBIN] }, raw });
  const created = (messageId: string) => receiver.ofType('message.created').filter((w) => (w.body.data as { message: { messageId: string } }).message.messageId === messageId);
  const send = () => ats.sendMail({
    from: ROBIN, to: CANDIDATE, subject: 'Your offer', text: 'Please find the offer attached.', messageId: SENT_ID, date: SENT_DATE,
    headers: { 'X-Mailsync-Candidate': 'c1' },
  });
  const list = async () => (await d.api<{ threads: Summary[] }>('GET', '/v1/candidates/c1/threads')).body.threads;

  const info = await send();
  t.match(info.response, new RegExp(`${SENT_ID}$`), 'the ATS-domain Message-ID is kept');
  await waitUntil(() => created(SENT_ID)[0], 'the relayed message stored');
  const reply = buildMessage({ from: CANDIDATE, to: ROBIN, subject: 'Re: Your offer', messageId: '<accept-1@example.org>', inReplyTo: SENT_ID, references: SENT_ID, text: 'I accept.' });
  await forward(reply);
  await waitUntil(() => created('<accept-1@example.org>')[0], 'the reply through the intake');
  const [thread] = await list();
  t.equal(thread?.messageCount, 2, 'both on the profile');
  const messages = (await d.api<ThreadView>('GET', `/v1/threads/${thread!.id}`)).body.messages;
  for (const m of messages) t.equal((await d.api('DELETE', `/v1/candidates/c1/messages/${m.id}`)).status, 204, `${m.messageId} removed`);
  t.same(await list(), [], 'the conversation left the profile');

  await t.test('the reply forwarded to the intake again', async (t) => {
    t.match((await forward(reply)).response, /^250 /);
    await waitUntil(async () => /mailsync_intake_messages_total\{outcome="duplicate"\} 1/.test(await (await fetch(`${d.daemon.apiUrl}/metrics`)).text()), 'the duplicate counted');
    t.same(await list(), []);
  });

  await t.test('the same message submitted again with X-Mailsync-Candidate: c1', async (t) => {
    await send();
    await waitUntil(() => receiver.ofType('message.sent').length === 2, 'the second message.sent');
    t.equal(sink.messages.length, 2, 'relayed again: sending is the ATS\'s call');
    const sent = receiver.ofType('message.sent')[1]!.body.data as { threadId: string };
    t.equal(sent.threadId, thread!.id, 'declared in the same thread');
    t.same(await list(), [], 'not back on the profile');
    t.same((await d.api<ThreadView>('GET', `/v1/threads/${thread!.id}`)).body.candidateIds, [], 'nor linked');
    t.equal(created(SENT_ID).length, 1, 'and not announced again');
  });

  await t.test('a new reply in the conversation links, alone', async (t) => {
    await forward(buildMessage({ from: CANDIDATE, to: ROBIN, subject: 'Re: Your offer', messageId: '<accept-2@example.org>', inReplyTo: '<accept-1@example.org>', references: `${SENT_ID} <accept-1@example.org>`, text: 'When do I start?' }));
    const event = await waitUntil(() => created('<accept-2@example.org>')[0], 'the new reply');
    t.same((event.body.data as { candidateIds: string[] }).candidateIds, ['c1']);
    const [back] = await list();
    t.same([back?.id, back?.messageCount], [thread!.id, 1]);
    t.same((await d.api<ThreadView>('GET', `/v1/threads/${thread!.id}?candidateId=c1`)).body.messages.map((m) => m.messageId), ['<accept-2@example.org>']);
  });
});
