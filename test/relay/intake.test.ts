import t from 'tap';
import nodemailer from 'nodemailer';
import { buildMessage } from '../helpers/dovecot.js';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';
import { ATS_LOGIN, atsClient, smtpDialogue, startSink } from '../helpers/smtp.js';

/**
 * Limited sync: no IMAP consent at all. The ATS sends through the relay (a smarthost stands
 * for the organisation's mail server), and a mail-flow rule forwards replies to the intake
 * listener, where they are matched by their id headers like on the IMAP path.
 */

const CANDIDATE = 'morgan.applicant@example.org';
const ROBIN = 'robin@example.com';
const NOOR = 'noor@example.com';

t.test('limited sync: replies forwarded to the intake join the relayed thread; everything else is dropped unstored', async (t) => {
  const sink = await startSink(t);
  const receiver = await startReceiver(t);
  const d = await startDaemon(t, {
    smtp: true,
    overrides: {
      webhooks: { url: receiver.url, secret: WEBHOOK_SECRET },
      smtp: { submission: { users: [ATS_LOGIN] }, relay: { allowPlaintext: true, smarthost: { host: '127.0.0.1', port: sink.port } } },
    },
  });
  await d.api('PUT', '/v1/users/u1', { body: { email: ROBIN, aliases: ['robin.r@example.com'] } });
  await d.api('PUT', '/v1/users/u2', { body: { email: NOOR } });
  await d.api('PUT', '/v1/candidates/c1', { body: { emails: [CANDIDATE] } });
  t.equal((await d.api('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).status, 404, 'no IMAP consent at all');

  const ats = atsClient(d.daemon.parts.relay.ports.submission);
  t.teardown(() => ats.close());
  const info = await ats.sendMail({ from: ROBIN, to: CANDIDATE, cc: NOOR, subject: 'Your interview', text: 'Can you come on Monday?', headers: { 'X-Mailsync-Candidate': 'c1' } });
  const stamped = /(<[^>]+>)$/.exec(info.response.trim())![1]!;
  const sent = await receiver.waitFor((w) => w.body.type === 'message.sent', 'message.sent');
  const threadId = (sent.body.data as { threadId: string }).threadId;
  await receiver.waitFor((w) => w.body.type === 'message.created', 'the relayed message stored in its thread');

  const intakePort = d.daemon.parts.relay.ports.intake;
  const provider = nodemailer.createTransport({ host: '127.0.0.1', port: intakePort, secure: false, ignoreTLS: true, logger: false });
  t.teardown(() => provider.close());
  const forward = (raw: string, to: string) => provider.sendMail({ envelope: { from: 'forwarder@example.com', to: [to] }, raw });
  const reply = buildMessage({
    from: `Morgan Applicant <${CANDIDATE}>`, to: ROBIN, subject: 'Re: Your interview', messageId: '<reply-1@mail.example.org>',
    inReplyTo: stamped, references: stamped, text: 'Monday at 9 works.',
  });

  // a route that keeps the original envelope recipient (Google Workspace "change route")
  const res = await forward(reply, ROBIN);
  t.match(res.response, /^250 /);
  const created = await receiver.waitFor((w) => w.body.type === 'message.created' && (w.body.data as { message: { messageId: string } }).message.messageId === '<reply-1@mail.example.org>', 'the forwarded reply');
  const data = created.body.data as { userId: string; threadId: string; candidateIds: string[]; message: { direction: string } };
  t.same([data.userId, data.threadId, data.candidateIds, data.message.direction], ['u1', threadId, ['c1'], 'inbound'], 'matched to the relayed thread, for the user it was forwarded from');

  // the same reply again (a second rule, a provider retry): stored once, no second event
  await forward(reply, ROBIN);
  await waitUntil(async () => /mailsync_intake_messages_total\{outcome="duplicate"\} 1/.test(await (await fetch(`${d.daemon.apiUrl}/metrics`)).text()), 'the duplicate counted');
  t.equal(receiver.received.filter((w) => w.body.type === 'message.created' && (w.body.data as { message: { messageId: string } }).message.messageId === '<reply-1@mail.example.org>').length, 1, 'one event for the reply');

  // a rule that adds the intake as a Bcc recipient (Microsoft 365): the envelope names the
  // intake; the header the forwarder added names the mailbox. Noor was in Cc and forwards hers.
  const replyAll = buildMessage({
    from: CANDIDATE, to: ROBIN, cc: NOOR, subject: 'Re: Your interview', messageId: '<reply-2@mail.example.org>',
    inReplyTo: '<reply-1@mail.example.org>', references: `${stamped} <reply-1@mail.example.org>`, text: 'PS: I will bring my portfolio.',
  });
  await forward(`X-Forwarded-To: ${NOOR}\r\n${replyAll}`, 'intake@mailsync.example.net');
  const fromNoor = await receiver.waitFor((w) => w.body.type === 'message.created' && (w.body.data as { message: { messageId: string } }).message.messageId === '<reply-2@mail.example.org>', 'the reply forwarded from Noor');
  t.equal((fromNoor.body.data as { userId: string }).userId, 'u2', 'X-Forwarded-To names the mailbox before To does');

  // an out-of-office answer is stored, flagged
  const ooo = `Auto-Submitted: auto-replied\r\n${buildMessage({ from: CANDIDATE, to: ROBIN, subject: 'Out of office: Re: Your interview', messageId: '<ooo-1@mail.example.org>', inReplyTo: stamped, text: 'I am away until Friday.' })}`;
  await forward(ooo, ROBIN);
  const oooEvent = await receiver.waitFor((w) => w.body.type === 'message.created' && (w.body.data as { message: { messageId: string } }).message.messageId === '<ooo-1@mail.example.org>', 'the auto-reply');
  t.equal((oooEvent.body.data as { message: { autoReply: boolean } }).message.autoReply, true, 'flagged autoReply');

  // mail that belongs to no tracked thread: accepted, not stored, logged without content
  const messagesBefore = (await d.daemon.parts.store.keys('msg!')).length;
  const threadsBefore = (await d.daemon.parts.store.keys('thr!')).length;
  const private_ = buildMessage({ from: 'sam@example.com', to: ROBIN, subject: 'Dinner plans zq81', text: 'Private marker body-7c1e' });
  t.match((await forward(private_, ROBIN)).response, /^250 /, 'accepted, so the rule does not bounce');
  await waitUntil(async () => /mailsync_intake_messages_total\{outcome="dropped"\} 1/.test(await (await fetch(`${d.daemon.apiUrl}/metrics`)).text()), 'the drop counted');
  t.equal((await d.daemon.parts.store.keys('msg!')).length, messagesBefore, 'no message stored');
  t.equal((await d.daemon.parts.store.keys('thr!')).length, threadsBefore, 'no thread made');
  t.notMatch(d.logs.join('\n'), /zq81|body-7c1e|sam@example\.com/, 'the log holds none of its content or addresses');

  const thread = await d.api<{ messages: Array<{ messageId: string; seenIn: Array<{ userId: string; folder: string }> }> }>('GET', `/v1/threads/${threadId}`);
  t.same(thread.body.messages.map((m) => m.messageId).sort(), [stamped, '<ooo-1@mail.example.org>', '<reply-1@mail.example.org>', '<reply-2@mail.example.org>'].sort(), 'the sent message, two replies and the auto-reply');
  t.same(thread.body.messages.find((m) => m.messageId === '<reply-1@mail.example.org>')!.seenIn, [{ userId: 'u1', folder: 'intake' }]);

  // a message that has gone round in circles is refused, which ends the loop
  const looped = `${Array.from({ length: 101 }, (_, i) => `Received: from hop${i}.example.net by hop${i + 1}.example.net; Tue, 1 Sep 2026 10:00:00 +0000`).join('\r\n')}\r\n${reply}`;
  const loopErr = await forward(looped, ROBIN).then(() => null, (e: Error & { responseCode?: number }) => e);
  t.equal(loopErr?.responseCode, 554, 'too many Received fields: 554');
});

t.test('the intake takes mail without AUTH and offers none; limits apply', async (t) => {
  const d = await startDaemon(t, { smtp: true, overrides: { smtp: { intake: { maxMessageBytes: 2_000, maxRecipients: 2 } } } });
  const port = d.daemon.parts.relay.ports.intake;
  const r = await smtpDialogue(port, ['EHLO mx.example.com', 'AUTH PLAIN AGF0cwBhdHM=', 'MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>', 'RCPT TO:<c@example.com>', 'RCPT TO:<d@example.com>', 'DATA',
    `Subject: big\r\n\r\n${'y'.repeat(3_000).match(/.{1,70}/g)!.join('\r\n')}\r\n.`, 'QUIT']);
  t.notMatch(r[1]!, /AUTH/, 'no AUTH offered');
  t.match(r[2]!, /^5\d\d /, 'AUTH is refused');
  t.match(r[6]!, /^452 /, 'the third recipient: 452');
  t.match(r[8]!, /^552 /, 'oversize: 552');
});
