import t, { type Test } from 'tap';
import { createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startDaemon, waitUntil, type RunningDaemon } from '../helpers/daemon.js';
import { ATS_LOGIN, atsClient, authPlain, selfSignedCert, smtpDialogue, startSink } from '../helpers/smtp.js';

/**
 * The relay is never an open relay: every way of sending without being the ATS, or as someone
 * who is not a user who can send, is refused with the SMTP code a client expects, and nothing
 * is queued, sent or recorded.
 */

const CANDIDATE = 'jordan.applicant@example.org';

type SmtpErr = Error & { responseCode?: number; command?: string; code?: string };

async function refusal(p: Promise<unknown>): Promise<SmtpErr> {
  try {
    await p;
  } catch (err) {
    return err as SmtpErr;
  }
  throw new Error('the message was accepted');
}

async function nothingQueued(t: Test, d: RunningDaemon, sinkCount: number): Promise<void> {
  const { relay, store } = d.daemon.parts;
  t.equal(relay.queue.depth, 0, 'nothing in the queue');
  t.equal(await relay.records.count(), 0, 'nothing in the stored queue');
  t.equal(sinkCount, 0, 'nothing reached the provider');
  t.same(await store.keys('thr!'), [], 'no thread was recorded');
}

t.test('refusals: no AUTH, wrong password, foreign sender, user without smtp, unnamed user, too many recipients, oversize', async (t) => {
  const login = await createMailbox('openrelay');
  const sink = await startSink(t);
  const env = dovecotEnv();
  const d = await startDaemon(t, {
    smtp: true,
    overrides: { sync: { tlsCaFile: env.caFile }, smtp: { submission: { users: [ATS_LOGIN], maxRecipients: 3, maxMessageBytes: 4_000 }, relay: { allowPlaintext: true } } },
  });
  const imap = { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } };
  await d.api('PUT', '/v1/users/u1', { body: { email: 'robin@example.com' } });
  await d.api('PUT', '/v1/users/u2', { body: { email: 'noor@example.com' } });
  await d.api('PUT', '/v1/users/u1/mailbox', { actingUser: 'u1', body: { imap, smtp: { host: '127.0.0.1', port: sink.port, secure: false, auth: { user: 'robin', pass: 'x' } } } });
  await d.api('PUT', '/v1/users/u2/mailbox', { actingUser: 'u2', body: { imap } });
  const port = d.daemon.parts.relay.ports.submission;
  const mail = { to: CANDIDATE, subject: 'Hello', text: 'Hi there.' };

  const noAuth = atsClient(port, null);
  let err = await refusal(noAuth.sendMail({ ...mail, from: 'robin@example.com' }));
  t.equal(err.responseCode, 530, `no AUTH: 530 (${err.message})`);
  noAuth.close();

  const wrong = atsClient(port, { user: 'ats', pass: 'guess' });
  err = await refusal(wrong.sendMail({ ...mail, from: 'robin@example.com' }));
  t.same([err.code, err.responseCode], ['EAUTH', 535], 'wrong password: 535');
  wrong.close();
  const unknownLogin = atsClient(port, { user: 'robin', pass: ATS_LOGIN.pass });
  err = await refusal(unknownLogin.sendMail({ ...mail, from: 'robin@example.com' }));
  t.equal(err.responseCode, 535, 'right password for another login name: 535');
  unknownLogin.close();

  const ats = atsClient(port);
  t.teardown(() => ats.close());
  err = await refusal(ats.sendMail({ ...mail, from: 'mallory@example.net' }));
  t.same([err.responseCode, err.command], [553, 'MAIL FROM'], 'a sender who is no user: refused at MAIL FROM');
  t.match(err.message, /X-Mailsync-User/, 'the refusal says what to do');
  err = await refusal(ats.sendMail({ ...mail, from: 'mallory@example.net', headers: { 'X-Mailsync-User': 'u1' } }));
  t.same([err.responseCode, err.command], [553, 'MAIL FROM'], 'naming a user does not make any envelope sender acceptable');
  err = await refusal(ats.sendMail({ ...mail, from: 'noor@example.com' }));
  t.same([err.responseCode, err.command], [553, 'MAIL FROM'], 'a user whose consent has no smtp settings cannot send');
  err = await refusal(ats.sendMail({ ...mail, from: 'bounces@ats.example.net' }));
  t.same([err.responseCode, err.command], [550, 'DATA'], 'the ATS\'s own address without X-Mailsync-User: refused');
  err = await refusal(ats.sendMail({ ...mail, from: 'bounces@ats.example.net', headers: { 'X-Mailsync-User': 'nobody' } }));
  t.equal(err.responseCode, 550, 'X-Mailsync-User naming no user: refused');
  err = await refusal(ats.sendMail({ ...mail, from: 'bounces@ats.example.net', headers: { 'X-Mailsync-User': 'u2' } }));
  t.equal(err.responseCode, 550, 'X-Mailsync-User naming a user without smtp settings: refused');
  err = await refusal(ats.sendMail({ ...mail, from: 'robin@example.com', headers: { 'X-Mailsync-Candidate': 'c1, not an id' } }));
  t.equal(err.responseCode, 550, 'a malformed candidate id: refused, not guessed');

  const big = 'x'.repeat(6_000);
  err = await refusal(ats.sendMail({ ...mail, from: 'robin@example.com', text: big }));
  t.equal(err.responseCode, 552, 'oversize (declared with SIZE): 552');

  // a client that goes on after a refused RCPT, and one that sends DATA without SIZE
  const login64 = authPlain(ATS_LOGIN.user, ATS_LOGIN.pass);
  const rcpts = ['a', 'b', 'c', 'd'].map((x) => `RCPT TO:<${x}@example.org>`);
  const tooMany = await smtpDialogue(port, ['EHLO ats.example.net', login64, 'MAIL FROM:<robin@example.com>', ...rcpts, 'RSET', 'QUIT']);
  t.same(tooMany.slice(4, 7).map((r) => r.slice(0, 3)), ['250', '250', '250'], 'three recipients are fine');
  t.match(tooMany[7]!, /^452 /, `the 4th recipient: 452 (${tooMany[7]})`);
  const bigData = await smtpDialogue(port, ['EHLO ats.example.net', login64, 'MAIL FROM:<robin@example.com>', `RCPT TO:<${CANDIDATE}>`, 'DATA',
    `From: robin@example.com\r\nTo: ${CANDIDATE}\r\nSubject: big\r\n\r\n${big.match(/.{1,70}/g)!.join('\r\n')}\r\n.`, 'QUIT']);
  t.match(bigData[6]!, /^552 /, `oversize without SIZE: 552 at the end of DATA (${bigData[6]})`);

  await nothingQueued(t, d, sink.messages.length);
  const metrics = await (await fetch(`${d.daemon.apiUrl}/metrics`)).text();
  t.match(metrics, /mailsync_relay_submissions_total\{outcome="refused"\} \d+/);
  t.notMatch(d.logs.join('\n'), /provider-secret|ats-secret-7f2c|Hi there/, 'no password or content in the log');
});

t.test('with a certificate: STARTTLS is offered and AUTH waits for it', async (t) => {
  const cert = selfSignedCert(t);
  const sink = await startSink(t);
  const d = await startDaemon(t, {
    smtp: true,
    overrides: {
      smtp: { tls: { certFile: cert.certFile, keyFile: cert.keyFile }, submission: { users: [ATS_LOGIN] }, relay: { allowPlaintext: true, smarthost: { host: '127.0.0.1', port: sink.port } } },
    },
  });
  await d.api('PUT', '/v1/users/u1', { body: { email: 'robin@example.com' } });
  const port = d.daemon.parts.relay.ports.submission;
  const plain = await smtpDialogue(port, ['EHLO ats.example.net', authPlain(ATS_LOGIN.user, ATS_LOGIN.pass), 'QUIT']);
  t.match(plain[1]!, /STARTTLS/, 'EHLO offers STARTTLS');
  t.match(plain[2]!, /^5\d\d /, `AUTH in clear is refused (${plain[2]})`);

  const ats = atsClient(port, ATS_LOGIN, { ignoreTLS: false, requireTLS: true, tls: { ca: cert.cert, servername: 'localhost' } });
  t.teardown(() => ats.close());
  const info = await ats.sendMail({ from: 'robin@example.com', to: CANDIDATE, subject: 'Over TLS', text: 'Encrypted on the way in.' });
  t.match(info.response, /^250 .*queued as q_/);
  await waitUntil(() => sink.messages.length === 1, 'the message at the smarthost');
  t.equal(sink.messages[0]!.from, 'robin@example.com', 'relayed through the smarthost for a user without smtp settings');
});
