import t, { type Test } from 'tap';
import { appendMessage } from '../helpers/dovecot.js';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { candidateReply, consentAndGoLive, feedEventsFor, mailboxState, messageIdOf, recruiterWithThread } from '../helpers/recruiter.js';

/**
 * The network between the daemon and a real Dovecot misbehaves (a TCP proxy in between):
 * IDLE is re-issued on schedule, latency is tolerated, an unsolicited BYE and a reset are
 * recovered from, and a 60 s blackhole — the flow silently forgotten, as by a NAT box — is
 * detected by the NOOP probe after a quiet IDLE, the socket replaced, and the mail that
 * arrived meanwhile is delivered within 30 s of recovery, exactly once. The daemon's timeouts are set short so the test does not have to
 * wait out production defaults; the blackhole itself lasts the full 60 s.
 */

t.setTimeout(240_000);

const BLACKHOLE_MS = 60_000;

t.test('IMAP connection faults between the daemon and Dovecot', async (t) => {
  const { login, env, original } = await recruiterWithThread('faults');
  const proxy = await FaultProxy.start(t, { host: env.host, port: env.port });
  const receiver = await startReceiver(t);
  const d = await startDaemon(t, {
    overrides: {
      webhooks: { url: receiver.url, secret: WEBHOOK_SECRET },
      sync: {
        // the socket timeout is left long: the NOOP probe after a quiet IDLE must find the dead flow
        tlsCaFile: env.caFile, sentPollSeconds: 600, idleRefreshSeconds: 2, probeTimeoutSeconds: 2, socketTimeoutSeconds: 120, connectTimeoutSeconds: 3,
        backoff: { minMs: 200, maxMs: 3_000, resetAfterSeconds: 10 },
      },
    },
  });
  await consentAndGoLive(d, login, { host: '127.0.0.1', port: proxy.port });

  /** Appends a reply straight to Dovecot (not through the proxy) and returns its Message-ID. */
  const reply = async (label: string) => {
    const r = candidateReply(login.address, original.messageId, label);
    await appendMessage(login, 'INBOX', r.raw);
    return r.messageId;
  };
  const delivered = (id: string, timeoutMs = 15_000) => receiver.waitFor((w) => messageIdOf(w) === id, `the webhook of ${id}`, timeoutMs);
  const assertOnce = async (t: Test, id: string) => {
    t.equal(receiver.received.filter((w) => messageIdOf(w) === id).length, 1, `${id}: delivered once`);
    t.equal((await feedEventsFor(d, id)).length, 1, `${id}: one event in the change feed`);
  };

  /** Commands the daemon sent, from its own debug log of the IMAP conversation (the wire is TLS). */
  const sent = (re: RegExp) => d.logs.filter((l) => l.includes('"src":"c"') && re.test((JSON.parse(l) as { msg: string }).msg)).length;

  await t.test('IDLE is re-issued before idleRefreshSeconds passes', async (t) => {
    const before = sent(/^\S+ IDLE$/);
    const doneBefore = sent(/^DONE$/);
    await waitUntil(() => sent(/^\S+ IDLE$/) >= before + 3, 'three more IDLE commands', 15_000);
    t.ok(sent(/^DONE$/) >= doneBefore + 2, 'each IDLE was ended with DONE before the next');
    const id = await reply('idle');
    await delivered(id);
    await assertOnce(t, id);
  });

  await t.test('with 300 ms of latency each way mail still arrives', async (t) => {
    proxy.delay(300);
    const id = await reply('slow');
    await delivered(id);
    proxy.delay(0);
    await assertOnce(t, id);
  });

  await t.test('an unsolicited BYE on an open connection: reconnect and carry on', async (t) => {
    const accepted = proxy.accepted;
    t.ok(proxy.injectToClients('* BYE Autologout; idle for too long\r\n') >= 1, 'BYE sent on the open connection');
    await waitUntil(() => proxy.accepted > accepted && proxy.liveFlows >= 1, 'a new connection');
    const id = await reply('after-bye');
    await delivered(id);
    await assertOnce(t, id);
  });

  await t.test('a connection reset: reconnect and carry on', async (t) => {
    const accepted = proxy.accepted;
    proxy.drop();
    await waitUntil(() => proxy.accepted > accepted && proxy.liveFlows >= 1, 'a new connection');
    const id = await reply('after-reset');
    await delivered(id);
    await assertOnce(t, id);
  });

  await t.test('mail appended during a 60 s blackhole arrives within 30 s of recovery, once', async (t) => {
    const messagesBefore = receiver.ofType('message.created').length;
    const flowsBefore = proxy.accepted;
    proxy.blackhole();
    const startedAt = Date.now();
    const during = await reply('blackhole-1');
    // the dead socket is noticed and replaced while the blackhole lasts: reconnect attempts
    // are made (and time out), and the mailbox reports it cannot reach the server
    await waitUntil(() => proxy.accepted > flowsBefore, 'a reconnect attempt during the blackhole', BLACKHOLE_MS);
    await waitUntil(async () => (await mailboxState(d)) === 'unreachable', 'the mailbox state unreachable', BLACKHOLE_MS);
    const later = await reply('blackhole-2');
    t.equal(receiver.ofType('message.created').length, messagesBefore, 'no mail could be delivered during the blackhole');
    // the fault lasts its full length; this is the duration of the outage, not a wait for an event
    await new Promise((r) => setTimeout(r, Math.max(0, startedAt + BLACKHOLE_MS - Date.now())));
    proxy.heal();
    const recoveredAt = Date.now();
    const [first, second] = await Promise.all([delivered(during, 30_000), delivered(later, 30_000)]);
    t.ok(first.at - recoveredAt < 30_000 && second.at - recoveredAt < 30_000, `both delivered within 30 s of recovery (${first.at - recoveredAt} ms, ${second.at - recoveredAt} ms)`);
    await assertOnce(t, during);
    await assertOnce(t, later);
    await waitUntil(async () => (await mailboxState(d)) === 'live', 'live again');
    const states = receiver.ofType('mailbox.state_changed').map((w) => w.body.data.state);
    t.same(states.slice(-2), ['unreachable', 'live'], 'the ATS was told: unreachable, then live again');
    t.ok(d.logs.some((l) => l.includes('connection dropped; reconnecting') && l.includes('did not answer a NOOP')), 'the silent socket was found by the NOOP probe and replaced');
  });

  await t.test('no message was ever delivered twice', async (t) => {
    const ids = receiver.ofType('message.created').map((w) => messageIdOf(w));
    t.equal(new Set(ids).size, ids.length, `${ids.length} message webhooks, all distinct`);
  });
});
